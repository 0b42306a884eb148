//! The account room's rules as pure functions: what a phone number, a
//! display name and a password must be; real-name verification's rules are
//! in [`real_name`]. No I/O.

use std::collections::HashSet;
use std::sync::OnceLock;

use crate::AccountError;

pub mod real_name;

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

#[cfg(test)]
mod tests {
    use super::*;

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
