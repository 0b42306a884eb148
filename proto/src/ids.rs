//! Typed ids, each spelt and parsed in one place.
//!
//! Ids are 64-bit numbers minted by the server (`superapp_kit::ids::IdGen`).
//! On the wire a conversation is named by a string: `d.<low>.<high>` for a
//! one-to-one chat (its two members, smaller id first, so both sides derive the
//! same name without a lookup) and `g.<group id>` for a group. Only the
//! canonical spelling parses: `d.9.3`, `d.03.9` or `g.+1` name nothing.
//! [`Topic`] names the bus topics of live delivery the same way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A registered user. Serde sees the bare number (as in access tokens); the
/// JSON API writes ids as strings at the edge, as JavaScript loses precision
/// above 2^53.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UserId(pub u64);

/// A group, whose conversation is `g.<id>`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct GroupId(pub u64);

macro_rules! number_id {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, InvalidId> {
                canonical_u64(s).map(Self).ok_or(InvalidId)
            }
        }

        impl From<u64> for $name {
            fn from(id: u64) -> Self {
                Self(id)
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0
            }
        }
    };
}

number_id!(UserId);
number_id!(GroupId);

/// A string that names no id of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidId;

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an id")
    }
}

impl std::error::Error for InvalidId {}

/// Decimal digits with no sign and no leading zero: one spelling per number.
fn canonical_u64(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// A conversation: one-to-one between two distinct users, or a group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConversationId {
    /// `low < high`, always; built by [`ConversationId::direct`].
    Direct {
        low: UserId,
        high: UserId,
    },
    Group(GroupId),
}

impl ConversationId {
    /// The one-to-one conversation of `a` and `b`, in either order; None when
    /// they are the same user.
    pub fn direct(a: UserId, b: UserId) -> Option<Self> {
        (a != b).then(|| Self::Direct {
            low: a.min(b),
            high: a.max(b),
        })
    }

    /// The group, for a group conversation.
    pub fn group(self) -> Option<GroupId> {
        match self {
            Self::Group(group) => Some(group),
            Self::Direct { .. } => None,
        }
    }

    /// In a one-to-one conversation, the other member, if `user` is one of the two.
    pub fn peer_of(self, user: UserId) -> Option<UserId> {
        match self {
            Self::Direct { low, high } if user == low => Some(high),
            Self::Direct { low, high } if user == high => Some(low),
            _ => None,
        }
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Direct { low, high } => write!(f, "d.{low}.{high}"),
            Self::Group(group) => write!(f, "g.{group}"),
        }
    }
}

impl FromStr for ConversationId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, InvalidId> {
        if let Some(group) = s.strip_prefix("g.") {
            return group.parse().map(Self::Group);
        }
        let (low, high) = s
            .strip_prefix("d.")
            .and_then(|rest| rest.split_once('.'))
            .ok_or(InvalidId)?;
        let (low, high): (UserId, UserId) = (low.parse()?, high.parse()?);
        if low < high {
            Ok(Self::Direct { low, high })
        } else {
            Err(InvalidId)
        }
    }
}

/// A live-delivery topic, named on the bus as `u.<user id>` or `g.<group id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Everything one user should see live, on every device.
    User(UserId),
    /// A group's topic is its conversation id: one publish reaches every
    /// gateway with a member of the group online.
    Group(GroupId),
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(user) => write!(f, "u.{user}"),
            Self::Group(group) => write!(f, "g.{group}"),
        }
    }
}

impl FromStr for Topic {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, InvalidId> {
        match s.split_at_checked(2) {
            Some(("u.", id)) => id.parse().map(Self::User),
            Some(("g.", id)) => id.parse().map(Self::Group),
            _ => Err(InvalidId),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_direct_conversation_has_one_canonical_name() {
        let c = ConversationId::direct(UserId(9), UserId(3)).unwrap();
        assert_eq!(c.to_string(), "d.3.9");
        assert_eq!("d.3.9".parse(), Ok(c));
        assert_eq!(c.peer_of(UserId(3)), Some(UserId(9)));
        assert_eq!(c.peer_of(UserId(4)), None);
        assert_eq!(ConversationId::direct(UserId(3), UserId(3)), None);
    }

    #[test]
    fn only_canonical_spellings_parse() {
        for bad in [
            "d.9.3",
            "d.3.3",
            "d.03.9",
            "d.3",
            "d.3.9.1",
            "",
            "d.-1.2",
            "d.+3.9",
            "g.",
            "g.01",
            "g.+1",
            "g.1.2",
            "g.-1",
            "x.1",
            "G.1",
            "d.3.18446744073709551616",
        ] {
            assert_eq!(bad.parse::<ConversationId>(), Err(InvalidId), "{bad}");
        }
        assert_eq!(
            "g.0".parse::<ConversationId>(),
            Ok(ConversationId::Group(GroupId(0)))
        );
        assert_eq!(
            "g.18446744073709551615".parse::<ConversationId>(),
            Ok(ConversationId::Group(GroupId(u64::MAX)))
        );
    }

    #[test]
    fn every_conversation_id_round_trips_through_its_name() {
        for c in [
            ConversationId::Group(GroupId(7)),
            ConversationId::direct(UserId(1), UserId(u64::MAX)).unwrap(),
            ConversationId::direct(UserId(0), UserId(1)).unwrap(),
        ] {
            assert_eq!(c.to_string().parse(), Ok(c));
        }
    }

    #[test]
    fn topics_round_trip_through_their_names() {
        for topic in [Topic::User(UserId(7)), Topic::Group(GroupId(u64::MAX))] {
            assert_eq!(topic.to_string().parse(), Ok(topic));
        }
        assert_eq!(Topic::User(UserId(7)).to_string(), "u.7");
        for bad in ["u.", "g.07", "x.1", "u", "", "u.1.2", "rpc.1"] {
            assert!(bad.parse::<Topic>().is_err(), "{bad}");
        }
    }

    fn conversation() -> impl Strategy<Value = ConversationId> {
        prop_oneof![
            any::<u64>().prop_map(|g| ConversationId::Group(GroupId(g))),
            (any::<u64>(), any::<u64>()).prop_filter_map("two users", |(a, b)| {
                ConversationId::direct(UserId(a), UserId(b))
            }),
        ]
    }

    fn topic() -> impl Strategy<Value = Topic> {
        prop_oneof![
            any::<u64>().prop_map(|u| Topic::User(UserId(u))),
            any::<u64>().prop_map(|g| Topic::Group(GroupId(g))),
        ]
    }

    /// Strings near the spellings: prefixes, dots, digits, signs, zeros.
    fn near_spelling() -> impl Strategy<Value = String> {
        "[dgu]?\\.?[-+0]?[0-9]{0,21}(\\.[-+0]?[0-9]{0,21})?(\\.[0-9]{0,3})?"
    }

    proptest! {
        #[test]
        fn every_id_reads_back_from_its_spelling(
            n in any::<u64>(),
            c in conversation(),
            t in topic(),
        ) {
            prop_assert_eq!(n.to_string().parse(), Ok(UserId(n)));
            prop_assert_eq!(n.to_string().parse(), Ok(GroupId(n)));
            prop_assert_eq!(c.to_string().parse(), Ok(c));
            prop_assert_eq!(t.to_string().parse(), Ok(t));
        }

        #[test]
        fn a_string_that_parses_is_the_one_spelling_of_its_id(
            s in prop_oneof![near_spelling(), any::<String>()],
        ) {
            if let Ok(id) = s.parse::<UserId>() {
                prop_assert_eq!(id.to_string(), s.clone());
            }
            if let Ok(c) = s.parse::<ConversationId>() {
                prop_assert_eq!(c.to_string(), s.clone());
            }
            if let Ok(t) = s.parse::<Topic>() {
                prop_assert_eq!(t.to_string(), s);
            }
        }
    }
}
