//! The account room's rules as pure functions: what a phone number, a
//! display name and a password must be; the social graph's rules: what a
//! friend request comes to, who may message whom, who may add whom to a
//! group, who sees someone's presence and who may find them; real-name
//! verification's rules are in [`real_name`], account security's (new
//! passwords, an account's deletion) in [`security`]; profiles' (handles,
//! what a lookup shows, contact matching's budget) in [`profile`]; people
//! nearby's in [`nearby`]. No I/O.
//! Every store backend calls the social rules inside the write that acts on
//! them.

use std::collections::HashSet;
use std::sync::OnceLock;

use crate::AccountError;
use crate::error::SocialError;
use crate::model::{
    Contact, ContactEdit, Invisible, PhoneVisibility, Reach, Relation, SendVerdict, UserId,
    WhoMayAddMe, WhoMayMessage,
};

pub mod nearby;
pub mod profile;
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
/// Past blocks (ended by an unblock) one user's view keeps, with their
/// times: the group messages sent during one stay hidden from the user.
/// Past this, the oldest are forgotten.
pub const MAX_BLOCK_SPANS: usize = 1_000;
/// A contact search is 1 to 64 characters.
pub const MAX_QUERY_CHARS: usize = 64;
/// A contact search answers at most this many contacts.
pub const MAX_FOUND: usize = 50;

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

/// What becomes of a one-to-one message from the sender, as `relation`
/// (the recipient's view of the sender) and the recipient's setting say.
/// A stranger under "friends only" is refused, blocked or not, so a
/// stranger cannot tell a block from the setting. Anyone else whom the
/// recipient blocks has the message withheld: stored, acknowledged and
/// shown on the sender's side, never delivered, as a message of someone not
/// blocked would be, so that not even a friend can tell.
pub fn reach(relation: Relation, setting: WhoMayMessage) -> Reach {
    if !relation.friends && setting == WhoMayMessage::Friends {
        Reach::Refused
    } else if relation.blocks {
        Reach::Withheld
    } else {
        Reach::Delivered
    }
}

/// [`reach`], and whether each side hides the other (their live copies of
/// the message are marked to be kept out of the conversation list).
pub fn send_verdict(relation: Relation, setting: WhoMayMessage) -> SendVerdict {
    SendVerdict {
        reach: reach(relation, setting),
        recipient_hides: relation.hides,
        sender_hides: relation.hidden_by,
    }
}

/// Whether `edit` may change the owner's entry for the other: any change
/// for a friend; for a former friend the owner still hides, only unhiding
/// (so the conversation they keep out of their list can come back).
pub fn may_edit_contact(friends: bool, hides: bool, edit: &ContactEdit) -> Result<(), SocialError> {
    let unhide_only = edit.remark.is_none() && edit.tags.is_none() && edit.hidden == Some(false);
    if friends || (hides && unhide_only) {
        Ok(())
    } else {
        Err(SocialError::NotFriends)
    }
}

/// An entry as the contact list's change feed carries it: a hidden friend
/// goes as a removal marked `hidden`, without remark or tags, so that every
/// device drops it; unhiding sends the whole entry again, so every device
/// restores it. The entry itself is kept as it was.
pub fn as_change(contact: Contact) -> Contact {
    if contact.hidden {
        Contact {
            remark: String::new(),
            tags: Vec::new(),
            removed: true,
            ..contact
        }
    } else {
        contact
    }
}

/// Whether an entry is listed in a contact list read from the start:
/// a friend, not hidden.
pub fn listed(contact: &Contact) -> bool {
    !contact.removed && !contact.hidden
}

/// A contact search's query: trimmed, 1 to 64 characters without control
/// characters; answered lower-cased, as matching compares it.
pub fn contact_query(raw: &str) -> Result<String, SocialError> {
    let query = raw.trim();
    let chars = query.chars().count();
    if chars == 0 || chars > MAX_QUERY_CHARS || query.chars().any(char::is_control) {
        return Err(SocialError::Invalid {
            code: "invalid_query",
            reason: "a search is 1 to 64 characters without control characters",
        });
    }
    Ok(query.to_lowercase())
}

/// Whether a search (`query`, as [`contact_query`] answers it) finds a
/// contact: a visible friend whose remark or display name starts with it,
/// ignoring case, or whose user id it is; a hidden one (a friend, or a
/// former friend still hidden) only by its exact remark, exact display name
/// (ignoring case) or exact user id, so that private mode shows nobody to
/// someone browsing with a letter or two.
pub fn contact_matches(query: &str, contact: &Contact, display_name: &str) -> bool {
    let id = contact.friend.0.to_string() == query;
    let remark = contact.remark.to_lowercase();
    let name = display_name.to_lowercase();
    if contact.hidden {
        id || (!remark.is_empty() && remark == query) || name == query
    } else {
        !contact.removed && (id || remark.starts_with(query) || name.starts_with(query))
    }
}

/// Whether a user's blocks and invisible mode leave them visible to another
/// user, as `relation` (the user's view of the other) says: never to
/// someone they block; with invisible mode `strangers`, to friends only;
/// with `everyone`, to nobody.
fn visible_to(relation: Relation, invisible: Invisible) -> bool {
    !relation.blocks
        && match invisible {
            Invisible::Off => true,
            Invisible::Strangers => relation.friends,
            Invisible::Everyone => false,
        }
}

/// Whether a viewer sees a user's presence and last seen, as `relation`
/// (the user's view of the viewer) and the user's invisible mode say: not
/// if the user blocks the viewer, nor if the user is invisible to them.
/// Either way the viewer is answered as for someone never seen, so neither
/// the block nor the mode is revealed.
pub fn may_see_presence(relation: Relation, invisible: Invisible) -> bool {
    visible_to(relation, invisible)
}

/// Whether `sender` may share `subject`'s contact card in a message, as
/// `relation` (the subject's view of the sender) says: their own always; a
/// friend's (someone in their contacts) unless that friend blocks them;
/// nobody else's. A card shows only the minimum everyone sees by id (name
/// and avatar), so neither invisible mode nor phone visibility changes the
/// rule; a block does, as it ends what the friend lets the sender do, and a
/// stranger's card would hand out someone who never agreed to the sender.
/// Whether the sender hides the friend, or blocks them, changes nothing:
/// those are the sender's own choices. A refusal does not say why.
pub fn may_share_card(sender: UserId, subject: UserId, relation: Relation) -> bool {
    sender == subject || (relation.friends && !relation.blocks)
}

/// Whether another user may discover a user, as `relation` (the user's
/// view of the other) and the user's invisible mode say: find them by
/// handle, by phone (where their phone visibility also allows it), by
/// contact matching, or among people nearby. Not if the user blocks the
/// other, nor if the user is invisible to them. The viewer's own blocks are
/// the viewer's business: a caller that hides whom the viewer blocks (as
/// nearby does) asks that apart. One's own self is the caller's case too.
pub fn discoverable(relation: Relation, invisible: Invisible) -> bool {
    visible_to(relation, invisible)
}

/// Whether a user's phone visibility shows their number to another user, as
/// `relation` (the user's view of the other) says, before blocks and
/// invisible mode ([`profile::sight`] applies all three).
pub fn phone_visible(relation: Relation, visibility: PhoneVisibility) -> bool {
    match visibility {
        PhoneVisibility::Everyone => true,
        PhoneVisibility::Friends => relation.friends,
        PhoneVisibility::Nobody => false,
    }
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
        (any::<[bool; 6]>()).prop_map(
            |[friends, blocks, blocked_by, requested_by, hides, hidden_by]| Relation {
                friends,
                blocks,
                blocked_by,
                requested_by,
                hides,
                hidden_by,
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
        fn a_card_is_shared_as_docs_privacy_says(relation in relation(), own in any::<bool>()) {
            let (sender, subject) = (UserId(1), UserId(if own { 1 } else { 2 }));
            // The rule as docs/privacy.md states it, "Contact cards".
            let want = own || (relation.friends && !relation.blocks);
            prop_assert_eq!(may_share_card(sender, subject, relation), want);
        }

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

    fn stands(friends: bool, blocks: bool) -> Relation {
        Relation {
            friends,
            blocks,
            ..Relation::default()
        }
    }

    #[test]
    fn a_blocked_sender_is_refused_only_where_a_stranger_would_be() {
        use WhoMayMessage::{Anyone, Friends};
        let cases = [
            (stands(true, false), Friends, Reach::Delivered),
            (stands(false, false), Friends, Reach::Refused),
            (stands(false, false), Anyone, Reach::Delivered),
            (stands(true, true), Friends, Reach::Withheld),
            (stands(false, true), Friends, Reach::Refused),
            (stands(false, true), Anyone, Reach::Withheld),
        ];
        for (relation, setting, expected) in cases {
            assert_eq!(
                reach(relation, setting),
                expected,
                "{relation:?} {setting:?}"
            );
        }
    }

    #[test]
    fn a_verdict_says_which_side_hides_the_other() {
        let relation = Relation {
            friends: true,
            hides: true,
            ..Relation::default()
        };
        let verdict = send_verdict(relation, WhoMayMessage::Friends);
        assert!(verdict.recipient_hides && !verdict.sender_hides);
    }

    fn contact(friend: u64, remark: &str, hidden: bool, removed: bool) -> Contact {
        Contact {
            friend: UserId(friend),
            remark: remark.into(),
            tags: vec!["school".into()],
            since_ms: 1,
            removed,
            hidden,
            version: 7,
        }
    }

    #[test]
    fn a_hidden_friend_is_found_by_exact_remark_name_or_id_only() {
        let hidden = contact(42, "Bunny", true, false);
        for query in ["bunny", "bo jones", "42"] {
            assert!(contact_matches(query, &hidden, "Bo Jones"), "{query}");
        }
        for query in ["b", "bun", "bo", "4"] {
            assert!(!contact_matches(query, &hidden, "Bo Jones"), "{query}");
        }
        let visible = contact(42, "Bunny", false, false);
        for query in ["b", "bun", "bo", "bo jones", "42"] {
            assert!(contact_matches(query, &visible, "Bo Jones"), "{query}");
        }
        assert!(
            !contact_matches("jones", &visible, "Bo Jones"),
            "a prefix, not a part"
        );
        let gone = contact(42, "", false, true);
        assert!(!contact_matches("42", &gone, "Bo Jones"), "a former friend");
        let gone_hidden = contact(42, "", true, true);
        assert!(contact_matches("42", &gone_hidden, "Bo Jones"));
        assert!(
            !contact_matches("", &gone_hidden, "Bo Jones"),
            "no blank remark"
        );
    }

    #[test]
    fn searches_are_trimmed_lower_cased_and_bounded() {
        assert_eq!(contact_query("  Bo ").unwrap(), "bo");
        for bad in ["", "   ", "a\u{0}b"] {
            assert!(contact_query(bad).is_err(), "{bad:?}");
        }
        assert!(contact_query(&"x".repeat(64)).is_ok());
        assert!(contact_query(&"x".repeat(65)).is_err());
    }

    #[test]
    fn a_former_friend_still_hidden_may_only_be_unhidden() {
        let unhide = ContactEdit {
            hidden: Some(false),
            ..ContactEdit::default()
        };
        let rename = ContactEdit {
            remark: Some("x".into()),
            hidden: Some(false),
            ..ContactEdit::default()
        };
        assert!(may_edit_contact(false, true, &unhide).is_ok());
        assert!(may_edit_contact(false, true, &rename).is_err());
        assert!(may_edit_contact(false, false, &unhide).is_err());
        assert!(may_edit_contact(true, false, &rename).is_ok());
    }

    #[test]
    fn the_change_feed_carries_a_hidden_friend_as_a_blank_removal() {
        let change = as_change(contact(42, "Bunny", true, false));
        assert!(change.removed && change.hidden);
        assert!(change.remark.is_empty() && change.tags.is_empty());
        assert_eq!(change.version, 7);
        let shown = contact(42, "Bunny", false, false);
        assert_eq!(as_change(shown.clone()), shown);
        assert!(listed(&shown) && !listed(&contact(42, "", true, false)));
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
