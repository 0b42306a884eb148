//! Password rules and argon2id hashing.

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::AccountError;

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

#[derive(Clone)]
pub struct Hasher {
    argon2: Argon2<'static>,
}

impl Hasher {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, AccountError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| AccountError::Internal(e.to_string()))?;
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=...`), which records its own parameters so
    /// that stronger settings later still verify old hashes.
    pub fn hash(&self, password: &str) -> Result<String, AccountError> {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        self.argon2
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountError::Internal(e.to_string()))
    }

    pub fn verify(&self, password: &str, phc: &str) -> bool {
        PasswordHash::new(phc)
            .map(|parsed| {
                self.argon2
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    }

    /// A hash of nothing, verified against when the phone is unknown, so that an
    /// unknown phone costs as much time as a wrong password.
    pub fn decoy(&self) -> &'static str {
        static DECOY: OnceLock<String> = OnceLock::new();
        DECOY.get_or_init(|| {
            self.hash("decoy password never matches")
                .unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hasher = Hasher::new(19 * 1024, 2).unwrap();
        let phc = hasher.hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher.verify("correct horse battery", &phc));
        assert!(!hasher.verify("wrong horse battery", &phc));
        assert!(!hasher.verify("x", "not a phc string"));
    }
}
