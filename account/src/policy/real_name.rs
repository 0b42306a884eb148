//! Real-name verification's rules as pure functions: what a resident
//! identity number and a legal name must be, how each is masked, who may
//! submit, and how many submissions a user gets. No I/O.
//!
//! The resident identity number is GB 11643-1999's: 18 characters, of which
//! 6 digits of the region of first registration, 8 of the birth date
//! (YYYYMMDD), 3 of a sequence code (odd for men, even for women), and a
//! check character, `0`-`9` or `X`, computed over the first 17 by ISO 7064
//! MOD 11-2. The check catches every single mistyped character and every
//! swap of two neighbours.

use std::fmt;

use crate::AccountError;
use crate::model::{RealNameRecord, RealNameState, UserId};

/// A submission that the provider has not decided within this long (a
/// day) ends rejected as `expired`, and the user may submit again.
pub const PENDING_LIMIT_MS: i64 = 24 * 3600 * 1000;

/// Submissions are counted per user within this window (24 hours).
pub const SUBMISSION_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A legal name's bounds, in characters: a surname and a given name at
/// least; at most enough for the longest transliterated names of China's
/// minorities, whose parts are joined by middle dots.
pub const MIN_LEGAL_NAME_CHARS: usize = 2;
pub const MAX_LEGAL_NAME_CHARS: usize = 64;

/// The earliest birth date accepted: nobody born before it is alive.
const EARLIEST_BIRTH: (i32, u32, u32) = (1900, 1, 1);

/// Weights of the first 17 characters: 2^(17 - i) mod 11, i = 0..16.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// The check character by the weighted sum mod 11: (12 - sum) mod 11, with
/// 10 written `X`.
const CHECK: &[u8; 11] = b"10X98765432";

/// The two-digit province codes of GB/T 2260 (and 81 to 83, of the Hong
/// Kong, Macao and Taiwan residence permits). The four digits after them are
/// not looked up: county codes are retired and renumbered over the years,
/// while the numbers issued under them stay valid for life.
const PROVINCES: &[u8] = &[
    11, 12, 13, 14, 15, // North
    21, 22, 23, // Northeast
    31, 32, 33, 34, 35, 36, 37, // East
    41, 42, 43, 44, 45, 46, // Central South
    50, 51, 52, 53, 54, // Southwest
    61, 62, 63, 64, 65, // Northwest
    71, // Taiwan
    81, 82, 83, // Hong Kong, Macao, Taiwan residence permits
];

/// Why an ID number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdNumberError {
    #[error("it must be 18 characters")]
    Length,
    #[error("the first 17 characters are digits, the last a digit or X")]
    Characters,
    #[error("it does not begin with a province code")]
    Region,
    #[error("characters 7 to 14 are not a birth date from 1900 to today")]
    BirthDate,
    #[error("its check character does not match: a character is mistyped")]
    CheckCharacter,
}

/// The check character of the first 17 characters of a resident identity
/// number (ISO 7064 MOD 11-2); None unless they are 17 ASCII digits.
pub fn check_character(first17: &str) -> Option<char> {
    let bytes = first17.as_bytes();
    if bytes.len() != 17 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = bytes
        .iter()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(char::from(CHECK[(sum % 11) as usize]))
}

/// A resident identity number that passed every check of [`IdNumber::parse`].
/// Its `Debug` shows only the masked form, so it cannot reach a log whole.
#[derive(Clone, PartialEq, Eq)]
pub struct IdNumber(String);

impl IdNumber {
    /// Surrounding whitespace is trimmed and a final `x` read as `X`; then
    /// the length, the characters, the province, a real birth date from
    /// 1900 up to `today` (a date in China, [`china_date`]), and the check
    /// character.
    pub fn parse(raw: &str, today: (i32, u32, u32)) -> Result<Self, IdNumberError> {
        let trimmed = raw.trim();
        // Counted in characters, so that oversized input is refused as such
        // before anything else looks at it.
        if trimmed.chars().count() != 18 {
            return Err(IdNumberError::Length);
        }
        let mut number = trimmed.to_string();
        if number.ends_with('x') {
            number.pop();
            number.push('X');
        }
        let bytes = number.as_bytes();
        // 18 characters and 18 bytes: ASCII only.
        if bytes.len() != 18
            || !bytes[..17].iter().all(u8::is_ascii_digit)
            || !(bytes[17].is_ascii_digit() || bytes[17] == b'X')
        {
            return Err(IdNumberError::Characters);
        }
        let province = (bytes[0] - b'0') * 10 + (bytes[1] - b'0');
        if !PROVINCES.contains(&province) {
            return Err(IdNumberError::Region);
        }
        let digits = |range: std::ops::Range<usize>| {
            bytes[range]
                .iter()
                .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'))
        };
        let birth = (digits(6..10) as i32, digits(10..12), digits(12..14));
        if !is_date(birth) || birth < EARLIEST_BIRTH || birth > today {
            return Err(IdNumberError::BirthDate);
        }
        if check_character(&number[..17]) != Some(char::from(bytes[17])) {
            return Err(IdNumberError::CheckCharacter);
        }
        Ok(Self(number))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 3-digit sequence code (characters 15 to 17).
    pub fn sequence(&self) -> &str {
        &self.0[14..17]
    }

    /// The number with all but its first and last characters hidden:
    /// `1****************X`. The first is the province group (one of eight,
    /// where one was first registered, at the coarsest); the last, the
    /// check character, follows from the others and says nothing of its
    /// own. The birth date, the county and the sequence code (whose parity
    /// is one's sex) stay hidden. The length stays 18, so the user
    /// recognises the shape of an identity number and which one it is.
    pub fn masked(&self) -> String {
        mask_id_number(&self.0)
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}

/// [`IdNumber::masked`] of a stored number's text.
pub fn mask_id_number(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    match (chars.first(), chars.last()) {
        (Some(first), Some(last)) if chars.len() > 2 => {
            let mut masked = String::with_capacity(chars.len());
            masked.push(*first);
            masked.extend(std::iter::repeat_n('*', chars.len() - 2));
            masked.push(*last);
            masked
        }
        _ => "*".repeat(chars.len()),
    }
}

/// A legal name that passed [`LegalName::parse`]. `Debug` masks it.
#[derive(Clone, PartialEq, Eq)]
pub struct LegalName(String);

/// What people type for the middle dot that joins the parts of a
/// transliterated name (阿依古丽·买买提): all are read as U+00B7, the one
/// the resident identity card prints.
const DOT_LOOKALIKES: &[char] = &['\u{2022}', '\u{2027}', '\u{30FB}', '\u{FF65}', '\u{22C5}'];
const MIDDLE_DOT: char = '\u{00B7}';

impl LegalName {
    /// Trimmed; 2 to 64 characters, each a letter of any script (Chinese
    /// characters are letters) or a middle dot between two letters. So no
    /// control characters, digits, spaces or punctuation: a resident
    /// identity card prints none of them in a name.
    pub fn parse(raw: &str) -> Result<Self, AccountError> {
        let trimmed = raw.trim();
        let count = trimmed.chars().count();
        if !(MIN_LEGAL_NAME_CHARS..=MAX_LEGAL_NAME_CHARS).contains(&count) {
            return Err(AccountError::InvalidLegalName);
        }
        let name: String = trimmed
            .chars()
            .map(|c| {
                if DOT_LOOKALIKES.contains(&c) {
                    MIDDLE_DOT
                } else {
                    c
                }
            })
            .collect();
        let chars: Vec<char> = name.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            let fits = if *c == MIDDLE_DOT {
                let between = i > 0 && i + 1 < chars.len();
                between && chars[i - 1] != MIDDLE_DOT && chars[i + 1] != MIDDLE_DOT
            } else {
                c.is_alphabetic()
            };
            if !fits {
                return Err(AccountError::InvalidLegalName);
            }
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as others may see it: [`mask_legal_name`].
    pub fn masked(&self) -> String {
        mask_legal_name(&self.0)
    }
}

impl fmt::Debug for LegalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LegalName({})", self.masked())
    }
}

/// A legal name as shown to anyone but its holder (the payee of a transfer,
/// say): every character but the last is a `*` (张三 `*三`, 欧阳娜娜
/// `***娜`), as payment apps confirm a payee. The surname, which narrows a
/// person down the most, stays hidden; the last character lets a payer who
/// knows the payee recognise them.
pub fn mask_legal_name(name: &str) -> String {
    let count = name.chars().count();
    let mut masked: String = std::iter::repeat_n('*', count.saturating_sub(1)).collect();
    masked.extend(name.chars().last());
    masked
}

/// Whether a user in `current` may submit: not once verified (a verified
/// identity is for life: it is what the wallet and the law rely on, and a
/// change of legal name goes through support, not a resubmission), and not
/// while a submission waits for the provider. A rejected user may submit
/// again.
pub fn may_submit(current: Option<RealNameState>) -> Result<(), AccountError> {
    match current {
        Some(RealNameState::Verified) => Err(AccountError::AlreadyVerified),
        Some(RealNameState::Pending) => Err(AccountError::VerificationPending),
        Some(RealNameState::Rejected(_)) | None => Ok(()),
    }
}

/// Whether one more submission fits: at most `limit` within
/// [`SUBMISSION_WINDOW_MS`] before `now_ms`, given the times of the user's
/// earlier ones. Otherwise, how long until the oldest of them leaves the
/// window.
pub fn submission_allowed(earlier_ms: &[i64], limit: u32, now_ms: i64) -> Result<(), u64> {
    let since = now_ms - SUBMISSION_WINDOW_MS;
    let within: Vec<i64> = earlier_ms.iter().copied().filter(|t| *t > since).collect();
    if within.len() < limit as usize {
        return Ok(());
    }
    let oldest = within.iter().copied().min().unwrap_or(now_ms);
    Err((oldest + SUBMISSION_WINDOW_MS - now_ms).max(1) as u64)
}

/// One ID number verifies one account: a number held by another account
/// (pending or verified there) is refused. The holder's own earlier claim
/// is no obstacle.
pub fn may_claim(holder: Option<UserId>, user: UserId) -> Result<(), AccountError> {
    match holder {
        Some(other) if other != user => Err(AccountError::IdNumberTaken),
        _ => Ok(()),
    }
}

/// Whether a decision on attempt `attempt_id` may be recorded over
/// `current`: only on that attempt, and only while it is pending, so a late
/// answer about a replaced attempt, or a second answer, changes nothing.
pub fn may_decide(current: Option<&RealNameRecord>, attempt_id: u64) -> bool {
    current.is_some_and(|r| r.attempt_id == attempt_id && r.state == RealNameState::Pending)
}

/// Whether a pending submission has waited past [`PENDING_LIMIT_MS`].
pub fn expired(submitted_at_ms: i64, now_ms: i64) -> bool {
    now_ms - submitted_at_ms >= PENDING_LIMIT_MS
}

/// The calendar date in China (UTC+8, no daylight saving) at `now_ms`: the
/// date a birth registered today carries.
pub fn china_date(now_ms: i64) -> (i32, u32, u32) {
    const CHINA_OFFSET_MS: i64 = 8 * 3600 * 1000;
    civil_from_days((now_ms + CHINA_OFFSET_MS).div_euclid(86_400_000))
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month, day)
}

fn is_date((year, month, day): (i32, u32, u32)) -> bool {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;
    use crate::model::Rejection;

    const TODAY: (i32, u32, u32) = (2026, 6, 1);

    /// A number of the given body (17 digits) with its check character.
    fn with_check(first17: &str) -> String {
        format!("{first17}{}", check_character(first17).unwrap())
    }

    #[test]
    fn the_standard_s_example_passes_and_its_check_character_is_x() {
        // The example number printed in explanations of GB 11643.
        assert_eq!(check_character("11010519491231002"), Some('X'));
        let number = IdNumber::parse("11010519491231002X", TODAY).unwrap();
        assert_eq!(number.as_str(), "11010519491231002X");
        assert_eq!(number.sequence(), "002");
    }

    #[test]
    fn a_lowercase_x_and_surrounding_spaces_are_read_as_the_number() {
        let number = IdNumber::parse("  11010519491231002x ", TODAY).unwrap();
        assert_eq!(number.as_str(), "11010519491231002X");
    }

    #[test]
    fn each_kind_of_wrong_number_is_refused_with_its_reason() {
        let cases = [
            ("", IdNumberError::Length),
            ("11010519491231002", IdNumberError::Length),
            ("11010519491231002X1", IdNumberError::Length),
            (&"1".repeat(10_000), IdNumberError::Length),
            ("11010519491231002Y", IdNumberError::Characters),
            ("1101051949123100X2", IdNumberError::Characters),
            ("11010519491231002\u{FF38}", IdNumberError::Characters),
            ("110105 9491231002X", IdNumberError::Characters),
            ("１１0105194912310020", IdNumberError::Characters),
            (&with_check("99010519491231002"), IdNumberError::Region),
            (&with_check("00010519491231002"), IdNumberError::Region),
            (&with_check("11010519490230002"), IdNumberError::BirthDate),
            (&with_check("11010519491301002"), IdNumberError::BirthDate),
            (&with_check("11010519491200002"), IdNumberError::BirthDate),
            (&with_check("11010518991231002"), IdNumberError::BirthDate),
            (&with_check("11010520260602002"), IdNumberError::BirthDate),
            ("110105194912310021", IdNumberError::CheckCharacter),
        ];
        for (raw, reason) in cases {
            assert_eq!(IdNumber::parse(raw, TODAY), Err(reason), "{raw}");
        }
    }

    #[test]
    fn a_birth_date_is_a_real_day_up_to_today_in_china() {
        // 29 February only in leap years; 2000 was one, 1900 was not.
        assert!(IdNumber::parse(&with_check("11010520000229002"), TODAY).is_ok());
        assert!(IdNumber::parse(&with_check("11010519000229002"), TODAY).is_err());
        assert!(IdNumber::parse(&with_check("11010519000101002"), TODAY).is_ok());
        // Born today (in China) is fine; tomorrow is not.
        assert!(IdNumber::parse(&with_check("11010520260601002"), TODAY).is_ok());
        // 2026-05-31 16:00 UTC is already 1 June in China.
        let evening_utc = 1_780_243_200_000;
        assert_eq!(china_date(evening_utc), (2026, 6, 1));
        assert_eq!(china_date(evening_utc - 1), (2026, 5, 31));
        assert_eq!(china_date(0), (1970, 1, 1));
    }

    #[test]
    fn the_masked_number_shows_its_first_and_last_characters_only() {
        let number = IdNumber::parse("11010519491231002X", TODAY).unwrap();
        assert_eq!(number.masked(), "1****************X");
        assert_eq!(number.masked().chars().count(), 18);
        assert_eq!(format!("{number:?}"), "IdNumber(1****************X)");
    }

    #[test]
    fn chinese_names_and_names_joined_by_a_middle_dot_are_accepted() {
        for name in [
            "张三",
            "欧阳娜娜",
            "阿依古丽·买买提",
            "爱新觉罗·溥仪",
            "Ōtani",
            "𠮷野",
        ] {
            assert_eq!(LegalName::parse(name).unwrap().as_str(), name);
        }
        // Lookalikes of the middle dot are read as U+00B7; spaces around are trimmed.
        assert_eq!(
            LegalName::parse(" 阿依古丽•买买提 ").unwrap().as_str(),
            "阿依古丽·买买提"
        );
        assert_eq!(
            LegalName::parse("阿依古丽・买买提").unwrap().as_str(),
            "阿依古丽·买买提"
        );
    }

    #[test]
    fn names_too_short_too_long_or_with_other_characters_are_refused() {
        let long = "张".repeat(MAX_LEGAL_NAME_CHARS + 1);
        for name in [
            "",
            "张",
            "   ",
            &long,
            "张\u{0}三",
            "张\n三",
            "张 三",
            "张三1",
            "·张三",
            "张三·",
            "张··三",
            "Robert'); DROP TABLE",
            "张三😀",
        ] {
            assert!(
                matches!(LegalName::parse(name), Err(AccountError::InvalidLegalName)),
                "{name:?}"
            );
        }
        assert!(LegalName::parse(&"张".repeat(MAX_LEGAL_NAME_CHARS)).is_ok());
    }

    #[test]
    fn a_masked_name_shows_only_its_last_character() {
        assert_eq!(mask_legal_name("张三"), "*三");
        assert_eq!(mask_legal_name("欧阳娜娜"), "***娜");
        assert_eq!(mask_legal_name(""), "");
        let name = LegalName::parse("阿依古丽·买买提").unwrap();
        assert_eq!(format!("{name:?}"), "LegalName(*******提)");
    }

    #[test]
    fn only_the_unverified_and_the_rejected_may_submit() {
        assert!(may_submit(None).is_ok());
        assert!(may_submit(Some(RealNameState::Rejected(Rejection::Mismatch))).is_ok());
        assert!(matches!(
            may_submit(Some(RealNameState::Pending)),
            Err(AccountError::VerificationPending)
        ));
        assert!(matches!(
            may_submit(Some(RealNameState::Verified)),
            Err(AccountError::AlreadyVerified)
        ));
    }

    #[test]
    fn submissions_are_counted_in_a_sliding_day() {
        let now = 10 * SUBMISSION_WINDOW_MS;
        assert_eq!(submission_allowed(&[], 3, now), Ok(()));
        let earlier = [now - 1_000, now - 2_000, now - 3_000];
        assert_eq!(submission_allowed(&earlier[..2], 3, now), Ok(()));
        // The oldest leaves the window 3 s short of a day from now.
        assert_eq!(
            submission_allowed(&earlier, 3, now),
            Err((SUBMISSION_WINDOW_MS - 3_000) as u64)
        );
        let old = [now - SUBMISSION_WINDOW_MS, now - 1_000, now - 2_000];
        assert_eq!(submission_allowed(&old, 3, now), Ok(()));
    }

    #[test]
    fn a_number_held_by_another_account_is_refused() {
        assert!(may_claim(None, UserId(1)).is_ok());
        assert!(may_claim(Some(UserId(1)), UserId(1)).is_ok());
        assert!(matches!(
            may_claim(Some(UserId(2)), UserId(1)),
            Err(AccountError::IdNumberTaken)
        ));
    }

    #[test]
    fn only_the_pending_attempt_itself_takes_a_decision() {
        let pending = RealNameRecord {
            user_id: UserId(1),
            attempt_id: 7,
            state: RealNameState::Pending,
            sealed: vec![],
            number_hash: String::new(),
            submitted_at_ms: 0,
            decided_at_ms: None,
        };
        assert!(may_decide(Some(&pending), 7));
        assert!(!may_decide(Some(&pending), 6));
        assert!(!may_decide(None, 7));
        let decided = RealNameRecord {
            state: RealNameState::Verified,
            ..pending
        };
        assert!(!may_decide(Some(&decided), 7));
    }

    #[test]
    fn a_pending_submission_expires_after_a_day() {
        assert!(!expired(0, PENDING_LIMIT_MS - 1));
        assert!(expired(0, PENDING_LIMIT_MS));
    }

    /// A valid number: a province, a birth date from 1900 to `TODAY`, any
    /// county and sequence code, and its check character.
    fn valid_number() -> impl Strategy<Value = String> {
        (
            prop::sample::select(PROVINCES),
            0u32..10_000,
            (1900i32..=2026, 1u32..=12, 1u32..=31),
            0u32..1000,
        )
            .prop_filter_map(
                "a real date up to today",
                |(province, county, (y, m, d), sequence)| {
                    (is_date((y, m, d)) && (y, m, d) <= TODAY).then(|| {
                        with_check(&format!(
                            "{province:02}{county:04}{y:04}{m:02}{d:02}{sequence:03}"
                        ))
                    })
                },
            )
    }

    proptest! {
        #[test]
        fn generated_valid_numbers_pass(number in valid_number()) {
            let parsed = IdNumber::parse(&number, TODAY);
            prop_assert_eq!(parsed.map(|n| n.as_str().to_string()), Ok(number));
        }

        /// MOD 11-2 catches any one changed character: 11 is prime and no
        /// weight is 0 mod 11, so no single change keeps the sum.
        #[test]
        fn a_valid_number_with_any_one_character_changed_is_refused(
            number in valid_number(),
            at in 0usize..18,
            replacement in prop::sample::select(b"0123456789X".as_slice()),
        ) {
            let mut bytes = number.clone().into_bytes();
            prop_assume!(bytes[at] != replacement);
            bytes[at] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(IdNumber::parse(&changed, TODAY).is_err(), "{} passed", changed);
        }

        /// Two neighbours swapped are caught too, unless they were equal.
        #[test]
        fn a_valid_number_with_two_neighbours_swapped_is_refused(
            number in valid_number(),
            at in 0usize..17,
        ) {
            let mut bytes = number.clone().into_bytes();
            prop_assume!(bytes[at] != bytes[at + 1]);
            bytes.swap(at, at + 1);
            let swapped = String::from_utf8(bytes).unwrap();
            prop_assert!(IdNumber::parse(&swapped, TODAY).is_err(), "{} passed", swapped);
        }

        #[test]
        fn parsing_never_panics_and_whatever_passes_has_a_matching_check_character(
            raw in "\\PC{0,40}",
        ) {
            if let Ok(number) = IdNumber::parse(&raw, TODAY) {
                let text = number.as_str();
                prop_assert_eq!(check_character(&text[..17]), text.chars().last());
            }
        }
    }
}
