//! The account room's rules as pure functions: what a phone number, a
//! display name and a password must be; the social graph's rules: what a
//! friend request comes to, who may message whom, who may add whom to a
//! group; real-name verification's rules are in [`real_name`], account
//! security's (new passwords, an account's deletion) in [`security`], people
//! nearby's in [`nearby`]. No I/O.
//! Every store backend calls the social rules inside the write that acts on
//! them.

use std::collections::HashSet;
use std::sync::OnceLock;

use crate::AccountError;
use crate::error::SocialError;
use crate::model::{Relation, UserId, WhoMayAddMe, WhoMayMessage};

pub mod nearby;
pub mod real_name;
pub mod security;

/// A device name is kept to this many characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

const COMMON: &str = include_str!("common-passwords.txt");
pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 128;

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect()
    })
}

/// Length in characters (not bytes), then the common-password list, compared
/// case-insensitively.
pub fn check_rules(password: &str) -> Result<(), AccountError> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(AccountError::PasswordTooShort);
    }
    if chars > MAX_CHARS {
        return Err(AccountError::PasswordTooLong);
    }
    if common().contains(password.to_lowercase().as_str()) {
        return Err(AccountError::PasswordTooCommon);
    }
    Ok(())
}

/// E.164: a plus sign, then 7 to 15 digits, the first not zero. Spaces, dashes
/// and parentheses that people type are removed first.
pub fn normalize_phone(raw: &str) -> Result<String, AccountError> {
    let cleaned: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    let digits = cleaned
        .strip_prefix('+')
        .ok_or(AccountError::InvalidPhone)?;
    let valid = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if valid {
        Ok(cleaned)
    } else {
        Err(AccountError::InvalidPhone)
    }
}

pub fn normalize_display_name(raw: &str) -> Result<String, AccountError> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > 64 || name.chars().any(char::is_control) {
        return Err(AccountError::InvalidDisplayName);
    }
    Ok(name.to_string())
}

/// The name a session shows for its device, cut to its limit.
pub fn device_name(raw: &str) -> String {
    raw.chars().take(MAX_DEVICE_NAME_CHARS).collect()
}

// ---- The social graph ----------------------------------------------------

/// A friend request lives this long unanswered (7 days, as in WeChat).
pub const REQUEST_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// The window of the daily cap on friend requests sent.
pub const REQUEST_WINDOW_MS: i64 = 24 * 3600 * 1000;
pub const MAX_GREETING_CHARS: usize = 100;
pub const MAX_REMARK_CHARS: usize = 32;
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 16;
/// Users one user may block.
pub const MAX_BLOCKS: u32 = 10_000;

/// How far one user may go with friends: the limits a store applies inside
/// the write that befriends or requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocialLimits {
    /// Friends one user may have.
    pub max_friends: u32,
    /// Friend requests one user may send in any 24 hours.
    pub requests_per_day: u32,
}

impl Default for SocialLimits {
    fn default() -> Self {
        Self {
            max_friends: 5_000,
            requests_per_day: 50,
        }
    }
}

fn check_text(
    value: &str,
    max: usize,
    code: &'static str,
    reason: &'static str,
) -> Result<(), SocialError> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(SocialError::Invalid { code, reason });
    }
    Ok(())
}

/// A greeting: at most 100 characters, no control characters.
pub fn check_greeting(greeting: &str) -> Result<(), SocialError> {
    check_text(
        greeting,
        MAX_GREETING_CHARS,
        "invalid_greeting",
        "a greeting is at most 100 characters",
    )
}

/// A remark (alias): at most 32 characters, no control characters.
pub fn check_remark(remark: &str) -> Result<(), SocialError> {
    check_text(
        remark,
        MAX_REMARK_CHARS,
        "invalid_remark",
        "a remark is at most 32 characters",
    )
}

/// Tags: at most 20, each 1 to 16 characters without control characters,
/// none twice.
pub fn check_tags(tags: &[String]) -> Result<(), SocialError> {
    let invalid = SocialError::Invalid {
        code: "invalid_tags",
        reason: "at most 20 tags, each 1 to 16 characters, none twice",
    };
    let mut seen = HashSet::new();
    let fine = tags.len() <= MAX_TAGS
        && tags.iter().all(|t| {
            let chars = t.chars().count();
            (1..=MAX_TAG_CHARS).contains(&chars)
                && !t.chars().any(char::is_control)
                && seen.insert(t.as_str())
        });
    if fine { Ok(()) } else { Err(invalid) }
}

/// What a friend request from `from` to `to` comes to, given how `from`
/// stands with `to`, both sides' friend counts, and the times of the
/// requests `from` sent in the last 24 hours (oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Stored for `to` to answer.
    Send,
    /// `to` asked first: they become friends at once.
    Befriend,
    /// `to` blocks `from`: answered as sent, and dropped, so the block is
    /// not revealed.
    Drop,
}

pub fn friend_request(
    from: UserId,
    to: UserId,
    relation: Relation,
    friend_counts: (u32, u32),
    sent_today: &[i64],
    now_ms: i64,
    limits: SocialLimits,
) -> Result<RequestOutcome, SocialError> {
    if from == to {
        return Err(SocialError::CannotBefriendSelf);
    }
    if relation.friends {
        return Err(SocialError::AlreadyFriends);
    }
    if relation.blocks {
        return Err(SocialError::BlockedByYou);
    }
    if sent_today.len() >= limits.requests_per_day as usize {
        let oldest = sent_today.first().copied().unwrap_or(now_ms);
        let retry_after_ms = (oldest + REQUEST_WINDOW_MS - now_ms).max(1) as u64;
        return Err(SocialError::TooManyRequests { retry_after_ms });
    }
    if relation.blocked_by {
        return Ok(RequestOutcome::Drop);
    }
    room_for_friends(friend_counts, limits)?;
    Ok(if relation.requested_by {
        RequestOutcome::Befriend
    } else {
        RequestOutcome::Send
    })
}

/// `owner` accepts the request of the other, as `relation` says they stand.
pub fn accept(
    relation: Relation,
    friend_counts: (u32, u32),
    limits: SocialLimits,
) -> Result<(), SocialError> {
    if relation.friends {
        return Err(SocialError::AlreadyFriends);
    }
    if !relation.requested_by || relation.blocked_by {
        return Err(SocialError::UnknownRequest);
    }
    if relation.blocks {
        return Err(SocialError::BlockedByYou);
    }
    room_for_friends(friend_counts, limits)
}

/// Both sides have room for one more friend.
fn room_for_friends(counts: (u32, u32), limits: SocialLimits) -> Result<(), SocialError> {
    if counts.0 >= limits.max_friends || counts.1 >= limits.max_friends {
        return Err(SocialError::TooManyFriends {
            max: limits.max_friends,
        });
    }
    Ok(())
}

/// `owner` may block `other`, blocking `blocked` users now.
pub fn may_block(owner: UserId, other: UserId, blocked: u32) -> Result<(), SocialError> {
    if owner == other {
        return Err(SocialError::Invalid {
            code: "cannot_block_self",
            reason: "one cannot block oneself",
        });
    }
    if blocked >= MAX_BLOCKS {
        return Err(SocialError::Invalid {
            code: "too_many_blocks",
            reason: "at most 10,000 blocked users",
        });
    }
    Ok(())
}

/// Whether the recipient takes a one-to-one message from the sender, as
/// `relation` (the recipient's view of the sender) and the recipient's
/// setting say: never from someone they block; from anyone else if they
/// take messages from anyone, else from friends only.
pub fn may_message(relation: Relation, setting: WhoMayMessage) -> bool {
    !relation.blocks && (relation.friends || setting == WhoMayMessage::Anyone)
}

/// Whether a viewer sees a user's presence and last seen, as `relation`
/// (the user's view of the viewer) says: not if the user blocks the viewer,
/// who is answered as for someone never seen, so the block is not revealed.
pub fn may_see_presence(relation: Relation) -> bool {
    !relation.blocks
}

/// How an inviter may bring someone into a group (at its creation or later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAdd {
    /// Added at once, without being asked.
    Direct,
    /// Sent an invitation, which they accept or decline.
    Invite,
    /// They block the inviter: answered as invited, and nothing is stored or
    /// sent, so the block is not revealed (as a blocked user's friend request).
    Drop,
}

/// How the inviter may bring the invitee into a group, as `relation` (the
/// invitee's view of the inviter) and the invitee's setting say: never if
/// the invitee blocks the inviter; directly if the invitee lets anyone add
/// them, or friends and they are friends; by invitation otherwise.
pub fn group_addition(relation: Relation, setting: WhoMayAddMe) -> GroupAdd {
    if relation.blocks {
        return GroupAdd::Drop;
    }
    match setting {
        WhoMayAddMe::Anyone => GroupAdd::Direct,
        WhoMayAddMe::Friends if relation.friends => GroupAdd::Direct,
        WhoMayAddMe::Friends | WhoMayAddMe::Invite => GroupAdd::Invite,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn setting() -> impl Strategy<Value = WhoMayAddMe> {
        prop_oneof![
            Just(WhoMayAddMe::Anyone),
            Just(WhoMayAddMe::Friends),
            Just(WhoMayAddMe::Invite),
        ]
    }

    fn relation() -> impl Strategy<Value = Relation> {
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(friends, blocks, blocked_by, requested_by)| Relation {
                friends,
                blocks,
                blocked_by,
                requested_by,
            },
        )
    }

    /// The rule as docs/privacy.md states it, row by row: who the invitee
    /// lets in without asking, and what a block does.
    fn the_table(relation: Relation, setting: WhoMayAddMe) -> GroupAdd {
        let lets_in_without_asking = match setting {
            WhoMayAddMe::Anyone => true,
            WhoMayAddMe::Friends => relation.friends,
            WhoMayAddMe::Invite => false,
        };
        if relation.blocks {
            GroupAdd::Drop
        } else if lets_in_without_asking {
            GroupAdd::Direct
        } else {
            GroupAdd::Invite
        }
    }

    proptest! {
        #[test]
        fn a_group_addition_is_what_the_table_says(relation in relation(), setting in setting()) {
            prop_assert_eq!(group_addition(relation, setting), the_table(relation, setting));
        }

        #[test]
        fn no_group_addition_adds_what_a_rule_forbids(relation in relation(), setting in setting()) {
            let added = group_addition(relation, setting) == GroupAdd::Direct;
            // A blocker is never added, nor asked.
            prop_assert!(!relation.blocks || group_addition(relation, setting) == GroupAdd::Drop);
            // Under "invite", nobody adds; under "friends", no stranger does.
            prop_assert!(!(added && setting == WhoMayAddMe::Invite));
            prop_assert!(!(added && setting == WhoMayAddMe::Friends && !relation.friends));
            // What the inviter thinks of the invitee, or a request between
            // them, changes nothing.
            let other_side = Relation { blocked_by: !relation.blocked_by, requested_by: !relation.requested_by, ..relation };
            prop_assert_eq!(group_addition(other_side, setting), group_addition(relation, setting));
        }
    }

    #[test]
    fn phones_are_accepted_only_in_e164_form() {
        assert_eq!(
            normalize_phone("+86 138-0013-8000").unwrap(),
            "+8613800138000"
        );
        for bad in [
            "8613800138000",
            "+0123456789",
            "+12",
            "+1234567890123456",
            "+86abc45678",
            "",
        ] {
            assert!(normalize_phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(normalize_display_name("  Ann ").unwrap(), "Ann");
        assert!(normalize_display_name("   ").is_err());
        assert!(normalize_display_name(&"x".repeat(65)).is_err());
        assert!(normalize_display_name("a\u{0}b").is_err());
    }

    #[test]
    fn the_list_holds_a_thousand_passwords() {
        assert_eq!(common().len(), 1000);
    }

    #[test]
    fn short_long_and_common_passwords_are_refused() {
        assert!(matches!(
            check_rules("short"),
            Err(AccountError::PasswordTooShort)
        ));
        assert!(matches!(
            check_rules(&"x".repeat(129)),
            Err(AccountError::PasswordTooLong)
        ));
        assert!(matches!(
            check_rules("password"),
            Err(AccountError::PasswordTooCommon)
        ));
        assert!(matches!(
            check_rules("PassWord1"),
            Err(AccountError::PasswordTooCommon)
        ));
        assert!(check_rules("correct horse battery").is_ok());
        // 8 characters of 2 bytes each: length counts characters.
        assert!(check_rules("密码密码密码密码").is_ok());
    }
}
