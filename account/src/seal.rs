//! Real-name data at rest: the ID number and the legal name are stored only
//! sealed, and the number is found again only by a keyed hash.
//!
//! One 32-byte key (`real_name.key`, or `real_name.key` in the data dir)
//! gives two keys by HKDF-Expand (RFC 5869) with SHA-256, each for one use:
//!
//! - the sealing key, of XChaCha20-Poly1305 (an AEAD). A sealed record is
//!   `[version 1][24-byte random nonce][ciphertext and 16-byte tag]`, its
//!   plaintext the 18 characters of the number followed by the name's UTF-8,
//!   its associated data the version and the user's id. A record copied onto
//!   another user's row, or altered by one bit, does not open. The nonces are
//!   random: 192 bits never repeat by chance, however many records one key
//!   seals, where the 96 bits of AES-GCM would call for counting;
//! - the lookup key, of HMAC-SHA256 over the number: the store holds this
//!   hash to keep one account per number. An ID number has under 40 bits of
//!   entropy (region, birth date, sequence), so a plain hash of it is undone
//!   by enumeration in minutes; without the key, this one is not.

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;

use std::fmt;
use std::path::Path;

use crate::key_file::KeyFile;
use crate::model::UserId;
use crate::policy::real_name::{IdNumber, LegalName, mask_id_number, mask_legal_name};
use crate::token::{KeyError, key_bytes};

/// The format of a sealed record, its first byte, and part of what its tag
/// covers. A new key or algorithm would be a new version, read beside this one.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const NUMBER_LEN: usize = 18;

/// The real-name key's file in the data dir.
pub const REAL_NAME_KEY_FILE: KeyFile = KeyFile {
    guards: "it unseals every ID number and legal name in account.db",
    holds: "the real-name key is 32 random bytes",
};

/// The keys that seal real-name records and hash ID numbers.
#[derive(Clone)]
pub struct RealNameKey {
    seal: XChaCha20Poly1305,
    lookup: Hmac<Sha256>,
}

/// A sealed record that does not open: altered, of another user, of
/// another key, or of an unknown version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sealed real-name record does not open with this key")]
pub struct Unopened;

/// What a sealed record holds. `Debug` shows both masked.
#[derive(Clone, PartialEq, Eq)]
pub struct Unsealed {
    pub id_number: String,
    pub legal_name: String,
}

impl fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unsealed")
            .field("id_number", &mask_id_number(&self.id_number))
            .field("legal_name", &mask_legal_name(&self.legal_name))
            .finish()
    }
}

impl RealNameKey {
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        let mut seal_key = expand(key, b"superapp real-name seal v1");
        let mut lookup_key = expand(key, b"superapp real-name lookup v1");
        let seal = XChaCha20Poly1305::new(&seal_key.into());
        let lookup = hmac_of(&lookup_key);
        seal_key.fill(0);
        lookup_key.fill(0);
        Self { seal, lookup }
    }

    /// The key given as standard base64 of 32 bytes (`real_name.key`).
    pub fn from_base64(key: &str) -> Result<Self, KeyError> {
        let mut bytes = key_bytes(key)?;
        let key = Self::from_bytes(&bytes);
        bytes.fill(0);
        Ok(key)
    }

    /// The key of the file at `path`, made on first use: 32 random bytes,
    /// owner-only; a file others may read is refused.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        let mut bytes = REAL_NAME_KEY_FILE.read_or_create(path)?;
        let key = Self::from_bytes(&bytes);
        bytes.fill(0);
        Ok(key)
    }

    /// Seals `number` and `name` for `user`.
    pub fn seal(&self, user: UserId, number: &IdNumber, name: &LegalName) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut plaintext = Vec::with_capacity(NUMBER_LEN + name.as_str().len());
        plaintext.extend_from_slice(number.as_str().as_bytes());
        plaintext.extend_from_slice(name.as_str().as_bytes());
        let aad = associated_data(user);
        let sealed = self.seal.encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        );
        plaintext.fill(0);
        // Encryption fails only for a plaintext beyond 256 GiB; a name is
        // at most 64 characters.
        let ciphertext = sealed.unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens what [`RealNameKey::seal`] sealed for `user`.
    pub fn open(&self, user: UserId, sealed: &[u8]) -> Result<Unsealed, Unopened> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN + NUMBER_LEN || sealed[0] != VERSION {
            return Err(Unopened);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        let aad = associated_data(user);
        let mut plaintext = self
            .seal
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| Unopened)?;
        let opened = match (
            std::str::from_utf8(&plaintext[..NUMBER_LEN]),
            std::str::from_utf8(&plaintext[NUMBER_LEN..]),
        ) {
            (Ok(number), Ok(name)) => Ok(Unsealed {
                id_number: number.to_string(),
                legal_name: name.to_string(),
            }),
            _ => Err(Unopened),
        };
        plaintext.fill(0);
        opened
    }

    /// HMAC-SHA256 of the number under the lookup key, hex: what the store
    /// keeps to find the account that holds a number.
    pub fn number_hash(&self, number: &IdNumber) -> String {
        let mut mac = self.lookup.clone();
        mac.update(number.as_str().as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn hmac_of(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; the error type exists for MACs that do not.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// HKDF-Expand (RFC 5869 §2.3) to one SHA-256 block: HMAC(prk, info || 1).
/// The configured key is 32 uniformly random bytes, so it serves as the
/// pseudorandom key without the extract step.
fn expand(prk: &[u8; 32], info: &[u8]) -> [u8; 32] {
    let mut mac = hmac_of(prk);
    mac.update(info);
    mac.update(&[1]);
    mac.finalize().into_bytes().into()
}

/// What a sealed record's tag covers beyond its text: the format and the
/// user, so a record moved to another user's row does not open.
fn associated_data(user: UserId) -> [u8; 9] {
    let mut aad = [0u8; 9];
    aad[0] = VERSION;
    aad[1..].copy_from_slice(&user.0.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TODAY: (i32, u32, u32) = (2026, 6, 1);

    fn number() -> IdNumber {
        IdNumber::parse("11010519491231002X", TODAY).unwrap()
    }

    fn name() -> LegalName {
        LegalName::parse("阿依古丽·买买提").unwrap()
    }

    #[test]
    fn a_sealed_record_opens_for_its_user_and_holds_neither_text_in_the_clear() {
        let key = RealNameKey::from_bytes(&[7; 32]);
        let sealed = key.seal(UserId(5), &number(), &name());
        let opened = key.open(UserId(5), &sealed).unwrap();
        assert_eq!(opened.id_number, "11010519491231002X");
        assert_eq!(opened.legal_name, "阿依古丽·买买提");
        let contains = |needle: &[u8]| sealed.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(b"11010519491231002X"));
        assert!(!contains(b"19491231"));
        assert!(!contains("买买提".as_bytes()));
        assert_eq!(
            format!("{opened:?}"),
            "Unsealed { id_number: \"1****************X\", legal_name: \"*******提\" }"
        );
    }

    #[test]
    fn two_seals_of_the_same_data_differ() {
        let key = RealNameKey::from_bytes(&[7; 32]);
        assert_ne!(
            key.seal(UserId(5), &number(), &name()),
            key.seal(UserId(5), &number(), &name())
        );
    }

    #[test]
    fn a_record_of_another_user_another_key_or_altered_does_not_open() {
        let key = RealNameKey::from_bytes(&[7; 32]);
        let sealed = key.seal(UserId(5), &number(), &name());
        assert_eq!(key.open(UserId(6), &sealed), Err(Unopened));
        let other = RealNameKey::from_bytes(&[8; 32]);
        assert_eq!(other.open(UserId(5), &sealed), Err(Unopened));
        for at in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[at] ^= 1;
            assert_eq!(key.open(UserId(5), &altered), Err(Unopened), "byte {at}");
        }
        assert_eq!(key.open(UserId(5), &sealed[..40]), Err(Unopened));
        assert_eq!(key.open(UserId(5), &[]), Err(Unopened));
    }

    #[test]
    fn the_number_hash_is_keyed_and_stable() {
        let key = RealNameKey::from_bytes(&[7; 32]);
        let hash = key.number_hash(&number());
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, key.number_hash(&number()));
        assert_ne!(
            hash,
            RealNameKey::from_bytes(&[8; 32]).number_hash(&number())
        );
        // Not the plain SHA-256 of the number, which anyone could enumerate.
        assert_ne!(hash, crate::token::token_hash("11010519491231002X"));
    }

    #[test]
    fn the_two_derived_keys_differ_from_each_other_and_from_the_key() {
        let master = [7u8; 32];
        let seal = expand(&master, b"superapp real-name seal v1");
        let lookup = expand(&master, b"superapp real-name lookup v1");
        assert_ne!(seal, lookup);
        assert_ne!(seal, master);
    }

    #[test]
    fn a_configured_key_is_32_bytes_of_base64() {
        assert!(RealNameKey::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
        assert_eq!(
            RealNameKey::from_base64("c2hvcnQ=").err(),
            Some(KeyError::WrongLength(5))
        );
        assert_eq!(
            RealNameKey::from_base64("not base64!").err(),
            Some(KeyError::NotBase64)
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_made_once_owner_only_and_refused_when_others_may_read_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("real_name.key");
        let first = RealNameKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = RealNameKey::load_or_create(&path).unwrap();
        let sealed = first.seal(UserId(1), &number(), &name());
        assert!(again.open(UserId(1), &sealed).is_ok(), "the same key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = RealNameKey::load_or_create(&path)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("chmod 600") && err.contains("unseals"),
            "{err}"
        );
    }
}
