//! Profiles' rules as pure functions: what a handle, an avatar URL, a
//! signature and a region must be; when a handle may change; what a viewer
//! sees of a user ([`sight`], the one place that decides it); and how many
//! phone hashes a user may match a day. No I/O.

use crate::error::ProfileError;
use crate::model::{
    Details, Invisible, PhoneVisibility, ProfileRecord, Relation, UserId, UserView,
};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// A handle's bounds, in characters (as WeChat IDs).
pub const MIN_HANDLE_CHARS: usize = 6;
pub const MAX_HANDLE_CHARS: usize = 20;
/// A handle is set at most once in this long (30 days).
pub const HANDLE_CHANGE_INTERVAL_MS: i64 = 30 * DAY_MS;
/// An avatar URL's bound, in bytes (as a group's avatar).
pub const MAX_AVATAR_URL_BYTES: usize = 512;
pub const MAX_SIGNATURE_CHARS: usize = 100;
pub const MAX_REGION_CHARS: usize = 64;
/// Lookups by handle or phone are counted per user within this window.
pub const LOOKUP_WINDOW_MS: i64 = 3600 * 1000;
/// Distinct phone hashes matched are counted per user within this window.
pub const MATCH_WINDOW_MS: i64 = DAY_MS;
/// A contact hash: SHA-256, in hex.
pub const CONTACT_HASH_HEX_CHARS: usize = 64;

/// A handle: 6 to 20 characters of ASCII letters, digits, `_` and `-`, the
/// first a letter. Taken as written: nothing is trimmed or folded.
pub fn check_handle(handle: &str) -> Result<(), ProfileError> {
    let fine = (MIN_HANDLE_CHARS..=MAX_HANDLE_CHARS).contains(&handle.len())
        && handle.starts_with(|c: char| c.is_ascii_alphabetic())
        && handle
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if fine {
        Ok(())
    } else {
        Err(ProfileError::InvalidHandle)
    }
}

/// What a handle is unique by, and found by: its letters in lower case, so
/// `Ann_Lee` and `ann_lee` are one handle.
pub fn handle_key(handle: &str) -> String {
    handle.to_ascii_lowercase()
}

/// Whether setting `new` (well-formed) changes the handle, given the one
/// held and when it was set: `Ok(false)` when it is the same, exactly;
/// `HandleTooSoon` within 30 days of the last setting. Whether another user
/// holds it is the store's to say, in the same write.
pub fn handle_change(
    held: Option<&str>,
    set_ms: Option<i64>,
    new: &str,
    now_ms: i64,
) -> Result<bool, ProfileError> {
    if held == Some(new) {
        return Ok(false);
    }
    if let Some(set_ms) = set_ms {
        let free_at = set_ms.saturating_add(HANDLE_CHANGE_INTERVAL_MS);
        if now_ms < free_at {
            return Err(ProfileError::HandleTooSoon {
                retry_after_ms: (free_at - now_ms) as u64,
            });
        }
    }
    Ok(true)
}

/// The prefix of an avatar that is a picture uploaded to this server:
/// `media:<media id>`, a content URI as Matrix's `mxc://` is. A client gets
/// a link to it by naming the avatar's user (docs/protocol.md §6.11).
pub const AVATAR_MEDIA: &str = "media:";

/// The media id of an avatar that is an uploaded picture
/// (`media:<64 lowercase hex digits>`), or None.
pub fn avatar_media(url: &str) -> Option<&str> {
    url.strip_prefix(AVATAR_MEDIA)
        .filter(|id| id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// An avatar URL: empty (none), an uploaded picture (`media:<media id>`,
/// [`avatar_media`]), or an `https` URL with a host, at most 512 bytes of
/// printable ASCII (anything else percent-encoded), without credentials.
pub fn check_avatar_url(url: &str) -> Result<(), ProfileError> {
    if url.is_empty() || avatar_media(url).is_some() {
        return Ok(());
    }
    let invalid = ProfileError::Invalid {
        code: "invalid_avatar",
        reason: "an avatar is media:<media id> of a picture you uploaded, or an https URL with a host, at most 512 bytes of printable ASCII, without credentials",
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(invalid);
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                host
            } else {
                authority
            }
        });
    let fine = url.len() <= MAX_AVATAR_URL_BYTES
        && url.bytes().all(|b| b.is_ascii_graphic())
        && !host.is_empty()
        && !authority.contains('@')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    if fine { Ok(()) } else { Err(invalid) }
}

fn check_text(
    value: &str,
    max: usize,
    code: &'static str,
    reason: &'static str,
) -> Result<(), ProfileError> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ProfileError::Invalid { code, reason });
    }
    Ok(())
}

/// A signature: at most 100 characters, no control characters (so no line
/// breaks); empty removes it.
pub fn check_signature(signature: &str) -> Result<(), ProfileError> {
    check_text(
        signature,
        MAX_SIGNATURE_CHARS,
        "invalid_signature",
        "a signature is at most 100 characters without control characters",
    )
}

/// A region: at most 64 characters, no control characters; empty removes it.
pub fn check_region(region: &str) -> Result<(), ProfileError> {
    check_text(
        region,
        MAX_REGION_CHARS,
        "invalid_region",
        "a region is at most 64 characters without control characters",
    )
}

/// A contact hash as a client sends it: 64 hex digits, in either case;
/// answered in lower case, as the server's own are.
pub fn contact_hash(raw: &str) -> Result<String, ProfileError> {
    if raw.len() == CONTACT_HASH_HEX_CHARS && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(ProfileError::Invalid {
            code: "invalid_hash",
            reason: "a contact hash is 64 hex digits: SHA-256 of the server's salt and an E.164 number",
        })
    }
}

/// How far a viewer sees into a user: each part the answers of lookups,
/// contact matching and presence show or hide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sight {
    /// Handle, signature, region, gender.
    pub details: bool,
    /// The phone number, in the profile.
    pub phone: bool,
    /// Online and last seen.
    pub presence: bool,
    /// Found by handle (and, by [`super::discoverable`], nearby).
    pub findable: bool,
    /// Found by phone number: a lookup by phone, contact matching.
    pub findable_by_phone: bool,
}

impl Sight {
    /// What a user sees of themselves.
    pub const ALL: Self = Self {
        details: true,
        phone: true,
        presence: true,
        findable: true,
        findable_by_phone: true,
    };
}

/// What `viewer` sees of `owner`, as `relation` (the owner's view of the
/// viewer) and the owner's phone visibility and invisible mode say. The
/// minimum (id, name, avatar) is everyone's; beyond it:
///
/// - the owner sees everything of themselves;
/// - someone the owner blocks, and someone the owner is invisible to
///   ([`super::discoverable`]), sees nothing more and finds the owner by
///   nothing: a block looks like invisible mode, and invisible mode like a
///   user who shows only the minimum;
/// - anyone else sees the details and the presence, finds the owner by
///   handle, and sees the number and finds the owner by it as the phone
///   visibility allows ([`super::phone_visible`]).
///
/// Whether the viewer blocks the owner changes nothing here.
pub fn sight(
    owner: UserId,
    viewer: UserId,
    relation: Relation,
    phone: PhoneVisibility,
    invisible: Invisible,
) -> Sight {
    if owner == viewer {
        return Sight::ALL;
    }
    let shown = super::discoverable(relation, invisible);
    let number = shown && super::phone_visible(relation, phone);
    Sight {
        details: shown,
        phone: number,
        presence: super::may_see_presence(relation, invisible),
        findable: shown,
        findable_by_phone: number,
    }
}

/// The view of `profile` that `sight` allows.
pub fn view(profile: &ProfileRecord, sight: Sight) -> UserView {
    UserView {
        user_id: profile.user_id,
        display_name: profile.display_name.clone(),
        avatar_url: profile.avatar_url.clone(),
        details: sight.details.then(|| Details {
            handle: profile.handle.clone(),
            signature: profile.signature.clone(),
            region: profile.region.clone(),
            gender: profile.gender,
        }),
        phone: sight.phone.then(|| profile.phone.clone()),
    }
}

/// Whether a user may match `new` phone hashes not matched before, having
/// matched those of `matched_ms` (when each was first matched, oldest
/// first) within the last 24 hours, at most `per_day` in any 24 hours. A
/// refusal says when enough of the earlier ones are a day old for this
/// request to fit.
pub fn contact_match_budget(
    matched_ms: &[i64],
    new: usize,
    per_day: u32,
    now_ms: i64,
) -> Result<(), ProfileError> {
    let total = matched_ms.len() + new;
    let per_day = per_day as usize;
    if total <= per_day {
        return Ok(());
    }
    let excess = total - per_day;
    let retry_after_ms = match matched_ms.get(excess - 1) {
        Some(&first) => (first + MATCH_WINDOW_MS - now_ms).max(1) as u64,
        // More new hashes than a whole day allows: a day from now, when
        // none of the earlier ones count.
        None => MATCH_WINDOW_MS as u64,
    };
    Err(ProfileError::TooManyMatches { retry_after_ms })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn handles_follow_the_rules_of_wechat_ids() {
        for good in ["ann_lee", "Ann-Lee-1987", "abcdef", "a2345678901234567890"] {
            assert!(check_handle(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "abcde",
            "a23456789012345678901",
            "1annlee",
            "_annlee",
            "ann lee",
            "ann.lee",
            "annlée",
            "ann_lee ",
        ] {
            assert!(
                matches!(check_handle(bad), Err(ProfileError::InvalidHandle)),
                "{bad}"
            );
        }
        assert_eq!(handle_key("Ann_Lee"), handle_key("aNN_lEE"));
    }

    #[test]
    fn a_handle_changes_once_in_thirty_days_and_setting_the_same_is_no_change() {
        let set = 1_000;
        assert!(handle_change(None, None, "ann_lee", set).unwrap());
        assert!(!handle_change(Some("ann_lee"), Some(set), "ann_lee", set + 1).unwrap());
        let soon = handle_change(Some("ann_lee"), Some(set), "Ann_Lee", set + 1_000);
        match soon {
            Err(ProfileError::HandleTooSoon { retry_after_ms }) => {
                assert_eq!(retry_after_ms, (HANDLE_CHANGE_INTERVAL_MS - 1_000) as u64);
            }
            other => panic!("{other:?}"),
        }
        let later = set + HANDLE_CHANGE_INTERVAL_MS;
        assert!(handle_change(Some("ann_lee"), Some(set), "ann_lee2", later).unwrap());
    }

    #[test]
    fn an_avatar_is_an_https_url_with_a_host_and_no_credentials_or_an_uploaded_picture() {
        let picture = format!("media:{}", "0123456789abcdef".repeat(4));
        assert_eq!(avatar_media(&picture), Some(&picture[6..]));
        assert_eq!(avatar_media("https://example.com/a.png"), None);
        for good in [
            "",
            picture.as_str(),
            "https://cdn.example.com/a/b.png",
            "https://cdn.example.com:8443/a.png?size=64#x",
            "https://[2001:db8::1]/a.png",
            "https://example.com",
        ] {
            assert!(check_avatar_url(good).is_ok(), "{good}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_AVATAR_URL_BYTES));
        for bad in [
            "http://example.com/a.png",
            "HTTPS://example.com/a.png",
            "javascript:alert(1)",
            "https:///a.png",
            "https://user:pw@example.com/a.png",
            "https://exa mple.com/a.png",
            "https://example.com/ä.png",
            "https://example.com/a\n.png",
            "//example.com/a.png",
            long.as_str(),
            "media:0123",
            &picture.to_uppercase().replace("MEDIA:", "media:"),
            &format!("{picture}0"),
        ] {
            let refused = check_avatar_url(bad);
            assert!(
                matches!(
                    refused,
                    Err(ProfileError::Invalid {
                        code: "invalid_avatar",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn signatures_and_regions_are_bounded_and_without_control_characters() {
        assert!(check_signature(&"字".repeat(100)).is_ok());
        assert!(check_signature(&"字".repeat(101)).is_err());
        assert!(check_signature("two\nlines").is_err());
        assert!(check_region("广东 深圳").is_ok());
        assert!(check_region(&"x".repeat(65)).is_err());
        assert!(check_region("a\tb").is_err());
    }

    #[test]
    fn contact_hashes_are_64_hex_digits_read_in_lower_case() {
        let hash = "AB".repeat(32);
        assert_eq!(contact_hash(&hash).unwrap(), "ab".repeat(32));
        for bad in ["ab".repeat(31), "zz".repeat(32), format!("{hash}0")] {
            assert!(contact_hash(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_match_budget_counts_new_hashes_and_says_when_room_returns() {
        let now = 10 * MATCH_WINDOW_MS;
        assert!(contact_match_budget(&[], 5, 5, now).is_ok());
        let earlier = [now - 5_000, now - 4_000, now - 3_000];
        assert!(contact_match_budget(&earlier, 2, 5, now).is_ok());
        match contact_match_budget(&earlier, 4, 5, now) {
            // Two of the three must age out: the second goes in a day less 4 s.
            Err(ProfileError::TooManyMatches { retry_after_ms }) => {
                assert_eq!(retry_after_ms, (MATCH_WINDOW_MS - 4_000) as u64);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            contact_match_budget(&[], 6, 5, now),
            Err(ProfileError::TooManyMatches { .. })
        ));
    }

    /// Who a viewer is to a profile's owner, in the words of
    /// docs/privacy.md's table.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Who {
        Myself,
        Friend,
        Stranger,
        /// The owner blocks the viewer (friends or not).
        Blocked,
    }

    /// The rules written again, as the table in docs/privacy.md reads:
    /// (details, phone, presence, found by handle, found by phone).
    fn table(who: Who, phone: PhoneVisibility, invisible: Invisible) -> [bool; 5] {
        let hidden = match (who, invisible) {
            (Who::Myself, _) => return [true; 5],
            (Who::Blocked, _) => true,
            (_, Invisible::Everyone) => true,
            (Who::Stranger, Invisible::Strangers) => true,
            _ => false,
        };
        if hidden {
            return [false; 5];
        }
        let number = match phone {
            PhoneVisibility::Everyone => true,
            PhoneVisibility::Friends => who == Who::Friend,
            PhoneVisibility::Nobody => false,
        };
        [true, number, true, true, number]
    }

    fn any_phone() -> impl Strategy<Value = PhoneVisibility> {
        prop_oneof![
            Just(PhoneVisibility::Everyone),
            Just(PhoneVisibility::Friends),
            Just(PhoneVisibility::Nobody),
        ]
    }

    fn any_invisible() -> impl Strategy<Value = Invisible> {
        prop_oneof![
            Just(Invisible::Off),
            Just(Invisible::Strangers),
            Just(Invisible::Everyone),
        ]
    }

    proptest! {
        /// Every relation and every pair of settings: what `sight` allows
        /// is the table's, and the viewer's own block or a waiting request
        /// changes nothing.
        #[test]
        fn what_a_viewer_sees_is_the_privacy_table(
            me in any::<bool>(),
            friends in any::<bool>(),
            blocks in any::<bool>(),
            blocked_by in any::<bool>(),
            requested_by in any::<bool>(),
            phone in any_phone(),
            invisible in any_invisible(),
        ) {
            let (owner, viewer) = (UserId(1), UserId(if me { 1 } else { 2 }));
            let relation = Relation { friends, blocks, blocked_by, requested_by, ..Relation::default() };
            let who = match () {
                _ if me => Who::Myself,
                _ if blocks => Who::Blocked,
                _ if friends => Who::Friend,
                _ => Who::Stranger,
            };
            let seen = sight(owner, viewer, relation, phone, invisible);
            prop_assert_eq!(
                [seen.details, seen.phone, seen.presence, seen.findable, seen.findable_by_phone],
                table(who, phone, invisible),
                "{:?}, {:?}, {:?}", who, phone, invisible
            );
            if !me {
                prop_assert_eq!(seen.presence, super::super::may_see_presence(relation, invisible));
                prop_assert_eq!(seen.findable, super::super::discoverable(relation, invisible));
            }
        }

        /// A view shows the minimum always, and each part only as its sight allows.
        #[test]
        fn a_view_shows_no_part_its_sight_hides(details in any::<bool>(), phone in any::<bool>()) {
            let profile = ProfileRecord {
                user_id: UserId(7),
                phone: "+8613800000007".into(),
                display_name: "Ann".into(),
                avatar_url: "https://example.com/a.png".into(),
                signature: "hi".into(),
                region: "Shenzhen".into(),
                gender: crate::model::Gender::Female,
                handle: Some("ann_lee".into()),
                handle_set_ms: Some(1),
                created_at_ms: 1,
            };
            let sight = Sight { details, phone, presence: false, findable: false, findable_by_phone: false };
            let shown = view(&profile, sight);
            prop_assert_eq!(shown.user_id, UserId(7));
            prop_assert_eq!(shown.display_name.as_str(), "Ann");
            prop_assert_eq!(shown.details.is_some(), details);
            prop_assert_eq!(shown.phone.is_some(), phone);
        }
    }
}
