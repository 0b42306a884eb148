//! The contact-matching salt: 32 random bytes of this server's, with which
//! clients hash the phone numbers of their address books before they upload
//! them (`POST /v1/contacts/match`), and the server its users' numbers.
//!
//! A hash is SHA-256 over the salt's 32 bytes followed by the number's
//! E.164 form in ASCII (`+8613800138000`), written as 64 lower-case hex
//! digits. The salt is handed to every signed-in client: it is not a
//! secret from users. It makes this server's hashes useless elsewhere, so
//! no table computed once for every number serves against every server;
//! phone numbers are a small space, and against someone who holds the salt
//! only the matching limits stand (docs/architecture.md §19).

use std::fmt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::key_file::KeyFile;
use crate::token::{KeyError, key_bytes};

/// The salt's file in the data dir.
pub const CONTACT_SALT_FILE: KeyFile = KeyFile {
    guards: "it salts the phone hashes of contact matching",
    holds: "the contact salt is 32 random bytes",
};

#[derive(Clone)]
pub struct ContactSalt([u8; 32]);

/// The salt is given to clients, but there is no reason to print it.
impl fmt::Debug for ContactSalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContactSalt(..)")
    }
}

impl ContactSalt {
    pub fn from_bytes(salt: [u8; 32]) -> Self {
        Self(salt)
    }

    /// The salt given as standard base64 of 32 bytes (`social.contact_salt`).
    pub fn from_base64(salt: &str) -> Result<Self, KeyError> {
        Ok(Self(key_bytes(salt)?))
    }

    /// The salt of the file at `path`, made on first use: 32 random bytes,
    /// owner-only; a file others may read is refused.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        Ok(Self(CONTACT_SALT_FILE.read_or_create(path)?))
    }

    /// The salt as clients take it: 64 lower-case hex digits.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// The hash of an E.164 number: hex of SHA-256(salt ‖ number).
    pub fn hash(&self, e164: &str) -> String {
        let mut digest = Sha256::new();
        digest.update(self.0);
        digest.update(e164.as_bytes());
        hex(&digest.finalize())
    }

    /// Names this salt without giving it away: what the store keeps to
    /// know whether its index of hashes was built with this salt.
    pub fn fingerprint(&self) -> String {
        let mut digest = Sha256::new();
        digest.update(b"superapp contact salt fingerprint v1");
        digest.update(self.0);
        hex(&digest.finalize()[..16])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_hash_is_sha256_of_the_salt_then_the_number() {
        let salt = ContactSalt::from_bytes([0; 32]);
        let mut input = vec![0u8; 32];
        input.extend_from_slice(b"+8613800138000");
        assert_eq!(salt.hash("+8613800138000"), hex(&Sha256::digest(&input)));
        assert_eq!(salt.hash("+8613800138000").len(), 64);
        assert_ne!(
            salt.hash("+8613800138000"),
            ContactSalt::from_bytes([1; 32]).hash("+8613800138000")
        );
        assert_eq!(salt.hex(), "00".repeat(32));
    }

    #[test]
    fn the_salt_is_kept_in_an_owner_only_file_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contact_salt.key");
        let made = ContactSalt::load_or_create(&path).unwrap();
        let read = ContactSalt::load_or_create(&path).unwrap();
        assert_eq!(made.hex(), read.hex());
        assert_eq!(made.fingerprint(), read.fingerprint());
        assert!(!format!("{made:?}").contains(&made.hex()));
    }
}
