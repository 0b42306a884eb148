//! Signed access tokens: `v2.<payload>.<signature>`, both parts base64url
//! without padding, the payload the JSON of [`Claims`] and the signature an
//! Ed25519 signature of the ASCII text `v2.<payload>`.
//!
//! The core alone holds the private key ([`TokenSigner`]); gateways verify
//! with the public key alone ([`TokenVerifier`]), so a gateway, or whoever
//! reads its configuration, cannot mint a token. A token's lifetime is
//! bounded by the verifier too: a validly signed token whose expiry lies
//! further from its issue time than the access lifetime allows is refused.
//! Short-lived by design: revocation before expiry is the session check the
//! verifier's caller makes. Tokens of the retired `v1` format (HMAC-SHA256
//! under a key the gateways shared) are refused as [`TokenError::Retired`].

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use superapp_proto::ids::UserId;

use crate::key_file::KeyFile;

/// How far apart the signer's and a verifier's clocks may be: a token issued
/// up to this far in the verifier's future is accepted, and a token's
/// lifetime may exceed the access lifetime by this much.
pub const MAX_CLOCK_SKEW_MS: i64 = 60_000;

/// What an access token says: who, which session family, from when, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// The session (refresh-token family) the token was issued for.
    pub sid: u64,
    /// Issue time, milliseconds since the Unix epoch.
    pub iat: i64,
    /// Expiry, milliseconds since the Unix epoch.
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("expired token")]
    Expired,
    /// Signed, but issued in the verifier's future or living longer than
    /// the access lifetime allows.
    #[error("token times out of bounds")]
    OutOfBounds,
    /// A token of the retired `v1` format, which is no longer checked.
    #[error("retired token format")]
    Retired,
}

/// Why a configured key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is not base64")]
    NotBase64,
    #[error("must be 32 bytes, not {0}")]
    WrongLength(usize),
    #[error("is not an Ed25519 public key")]
    NotAPublicKey,
}

/// The token key's file in the data dir.
const TOKEN_KEY_FILE: KeyFile = KeyFile {
    guards: "it signs every access token",
    holds: "the token key is a 32-byte Ed25519 seed",
};

/// Decodes standard base64 of exactly 32 bytes.
pub(crate) fn key_bytes(base64: &str) -> Result<[u8; 32], KeyError> {
    let bytes = STANDARD
        .decode(base64.trim())
        .map_err(|_| KeyError::NotBase64)?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyError::WrongLength(len))
}

/// Signs access tokens; the core's alone. Also verifies them.
#[derive(Clone)]
pub struct TokenSigner {
    key: SigningKey,
    verifier: TokenVerifier,
}

impl TokenSigner {
    /// The signer of a 32-byte Ed25519 seed. `max_lifetime_ms` is the access
    /// lifetime its verifier allows a token.
    pub fn from_seed(seed: &[u8; 32], max_lifetime_ms: i64) -> Self {
        let key = SigningKey::from_bytes(seed);
        Self {
            verifier: TokenVerifier {
                key: key.verifying_key(),
                max_lifetime_ms,
            },
            key,
        }
    }

    /// The signer of a seed given as standard base64 (`auth.token_key`).
    pub fn from_base64(seed: &str, max_lifetime_ms: i64) -> Result<Self, KeyError> {
        Ok(Self::from_seed(&key_bytes(seed)?, max_lifetime_ms))
    }

    /// Reads the seed from `path`, refusing a file that others may read or
    /// that does not hold exactly 32 bytes.
    pub fn load(path: &Path, max_lifetime_ms: i64) -> std::io::Result<Self> {
        let mut seed = TOKEN_KEY_FILE.read(path)?;
        let signer = Self::from_seed(&seed, max_lifetime_ms);
        seed.fill(0);
        Ok(signer)
    }

    /// Reads the seed from `path` as [`TokenSigner::load`] does, or creates a
    /// random one readable by the owner only.
    pub fn load_or_create(path: &Path, max_lifetime_ms: i64) -> std::io::Result<Self> {
        let mut seed = TOKEN_KEY_FILE.read_or_create(path)?;
        let signer = Self::from_seed(&seed, max_lifetime_ms);
        seed.fill(0);
        Ok(signer)
    }

    /// The verifier of this signer's tokens: what a gateway is given.
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("v2.{}", B64.encode(payload));
        let signature = self.key.sign(signed.as_bytes());
        format!("{signed}.{}", B64.encode(signature.to_bytes()))
    }

    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, TokenError> {
        self.verifier.verify(token, now_ms)
    }
}

/// Verifies access tokens with the public key only.
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    key: VerifyingKey,
    /// The access lifetime: a token's `exp - iat` may exceed it by
    /// [`MAX_CLOCK_SKEW_MS`] at most.
    max_lifetime_ms: i64,
}

impl TokenVerifier {
    /// The verifier of a public key given as standard base64
    /// (`auth.token_public_key`).
    pub fn from_base64(public_key: &str, max_lifetime_ms: i64) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(&key_bytes(public_key)?)
            .map_err(|_| KeyError::NotAPublicKey)?;
        Ok(Self {
            key,
            max_lifetime_ms,
        })
    }

    /// The public key, standard base64: the value of `auth.token_public_key`.
    pub fn public_key(&self) -> String {
        STANDARD.encode(self.key.as_bytes())
    }

    /// The claims of a token this key signed, issued no later than
    /// `now_ms + MAX_CLOCK_SKEW_MS`, living no longer than the access lifetime
    /// (plus the skew), and not expired at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, TokenError> {
        if token.starts_with("v1.") {
            return Err(TokenError::Retired);
        }
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let payload = signed.strip_prefix("v2.").ok_or(TokenError::Malformed)?;
        let signature: [u8; 64] = B64
            .decode(signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(TokenError::Malformed)?;
        // Strict: no second encoding of a signature or of the key verifies.
        self.key
            .verify_strict(signed.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| TokenError::BadSignature)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        let longest = self.max_lifetime_ms.saturating_add(MAX_CLOCK_SKEW_MS);
        if claims.iat > now_ms.saturating_add(MAX_CLOCK_SKEW_MS)
            || claims.exp > claims.iat.saturating_add(longest)
        {
            return Err(TokenError::OutOfBounds);
        }
        if claims.exp <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// 256 random bits, base64url: refresh tokens and WebSocket tickets.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

/// SHA-256 of an opaque token, hex: what the store keeps instead of the token.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write as _;

    use proptest::prelude::*;

    use super::*;

    const LIFETIME_MS: i64 = 900_000;

    fn signer() -> TokenSigner {
        TokenSigner::from_seed(&[7; 32], LIFETIME_MS)
    }

    fn claims(iat: i64) -> Claims {
        Claims {
            sub: UserId(1),
            sid: 2,
            iat,
            exp: iat + LIFETIME_MS,
        }
    }

    #[test]
    #[ignore = "a benchmark; prints the time to sign and to verify an access token"]
    fn cost_of_signing_and_verifying_a_token() {
        let (signer, rounds) = (signer(), 5_000u32);
        let token = signer.sign(&claims(0));
        let started = std::time::Instant::now();
        for i in 0..rounds {
            std::hint::black_box(signer.sign(&claims(i64::from(i))));
        }
        let sign = started.elapsed() / rounds;
        let verifier = signer.verifier();
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(verifier.verify(&token, 0).unwrap());
        }
        let verify = started.elapsed() / rounds;
        println!(
            "an access token ({} bytes): sign {sign:?}, verify {verify:?}",
            token.len()
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused_with_the_fix_named() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let created = TokenSigner::load_or_create(&path, LIFETIME_MS).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = TokenSigner::load_or_create(&path, LIFETIME_MS)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let again = TokenSigner::load_or_create(&path, LIFETIME_MS).unwrap();
        assert_eq!(
            again.verify(&created.sign(&claims(0)), 0).unwrap(),
            claims(0)
        );
    }

    #[test]
    fn a_key_file_of_another_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        options.open(&path).unwrap().write_all(&[1; 48]).unwrap();
        let err = TokenSigner::load_or_create(&path, LIFETIME_MS)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("32-byte"), "{err}");
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let token = signer().sign(&claims(0));
        assert!(token.starts_with("v2."));
        assert_eq!(signer().verify(&token, LIFETIME_MS - 1), Ok(claims(0)));
        assert_eq!(
            signer().verify(&token, LIFETIME_MS),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn the_public_key_alone_verifies_and_round_trips_through_base64() {
        let public = signer().verifier().public_key();
        let verifier = TokenVerifier::from_base64(&public, LIFETIME_MS).unwrap();
        assert_eq!(verifier.public_key(), public);
        assert_eq!(
            verifier.verify(&signer().sign(&claims(5)), 10),
            Ok(claims(5))
        );
    }

    #[test]
    fn keys_that_are_not_32_bytes_of_base64_are_refused() {
        assert_eq!(
            TokenSigner::from_base64("not base64!", LIFETIME_MS).err(),
            Some(KeyError::NotBase64)
        );
        assert_eq!(
            TokenVerifier::from_base64(&STANDARD.encode([1; 48]), LIFETIME_MS).err(),
            Some(KeyError::WrongLength(48))
        );
    }

    #[test]
    fn a_token_signed_with_another_key_or_altered_is_refused() {
        let token = signer().sign(&claims(0));
        let other = TokenSigner::from_seed(&[8; 32], LIFETIME_MS);
        assert_eq!(other.verify(&token, 0), Err(TokenError::BadSignature));
        let forged = signer().sign(&Claims {
            sub: UserId(9),
            ..claims(0)
        });
        let (forged_payload, _) = forged.rsplit_once('.').unwrap();
        let (_, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(
            signer().verify(&format!("{forged_payload}.{signature}"), 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(signer().verify("garbage", 0), Err(TokenError::Malformed));
    }

    #[test]
    fn a_token_of_the_retired_hmac_format_is_refused_as_retired() {
        assert_eq!(
            signer().verify("v1.eyJzdWIiOjF9.AAAA", 0),
            Err(TokenError::Retired)
        );
    }

    #[test]
    fn a_validly_signed_token_living_too_long_or_issued_in_the_future_is_refused() {
        let far = Claims {
            exp: LIFETIME_MS + MAX_CLOCK_SKEW_MS + 1,
            ..claims(0)
        };
        assert_eq!(
            signer().verify(&signer().sign(&far), 0),
            Err(TokenError::OutOfBounds)
        );
        let just = Claims {
            exp: LIFETIME_MS + MAX_CLOCK_SKEW_MS,
            ..claims(0)
        };
        assert_eq!(signer().verify(&signer().sign(&just), 0), Ok(just));
        let early = claims(MAX_CLOCK_SKEW_MS + 1);
        assert_eq!(
            signer().verify(&signer().sign(&early), 0),
            Err(TokenError::OutOfBounds)
        );
        let skewed = claims(MAX_CLOCK_SKEW_MS);
        assert_eq!(signer().verify(&signer().sign(&skewed), 0), Ok(skewed));
    }

    #[test]
    fn the_key_file_is_created_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let a = TokenSigner::load_or_create(&path, LIFETIME_MS).unwrap();
        let b = TokenSigner::load_or_create(&path, LIFETIME_MS).unwrap();
        assert_eq!(b.verify(&a.sign(&claims(0)), 0), Ok(claims(0)));
        assert_eq!(std::fs::read(&path).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    fn any_claims() -> impl Strategy<Value = Claims> {
        (any::<u64>(), any::<u64>(), 0..i64::MAX / 2, 1..=LIFETIME_MS).prop_map(
            |(sub, sid, iat, lifetime)| Claims {
                sub: UserId(sub),
                sid,
                iat,
                exp: iat + lifetime,
            },
        )
    }

    proptest! {
        #[test]
        fn signed_tokens_verify_and_no_single_byte_change_does(
            seed in any::<[u8; 32]>(),
            claims in any_claims(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let signer = TokenSigner::from_seed(&seed, LIFETIME_MS);
            let token = signer.sign(&claims);
            let verifier =
                TokenVerifier::from_base64(&signer.verifier().public_key(), LIFETIME_MS).unwrap();
            prop_assert_eq!(verifier.verify(&token, claims.iat), Ok(claims));
            let mut altered = token.clone().into_bytes();
            let at = at.index(altered.len());
            prop_assume!(altered[at] != byte);
            altered[at] = byte;
            // A token that is not UTF-8 cannot be presented at all.
            if let Ok(altered) = String::from_utf8(altered) {
                prop_assert!(verifier.verify(&altered, claims.iat).is_err(), "{}", altered);
            }
        }

        #[test]
        fn a_token_living_longer_than_the_lifetime_allows_is_refused(
            seed in any::<[u8; 32]>(),
            claims in any_claims(),
            beyond in 1..i64::MAX / 4,
        ) {
            let signer = TokenSigner::from_seed(&seed, LIFETIME_MS);
            let far = Claims {
                exp: claims.iat + LIFETIME_MS + MAX_CLOCK_SKEW_MS + beyond,
                ..claims
            };
            prop_assert_eq!(
                signer.verify(&signer.sign(&far), claims.iat),
                Err(TokenError::OutOfBounds)
            );
        }

        #[test]
        fn a_token_signed_with_another_key_is_refused(
            seed in any::<[u8; 32]>(),
            other in any::<[u8; 32]>(),
            claims in any_claims(),
        ) {
            prop_assume!(seed != other);
            let token = TokenSigner::from_seed(&other, LIFETIME_MS).sign(&claims);
            prop_assert_eq!(
                TokenSigner::from_seed(&seed, LIFETIME_MS).verify(&token, claims.iat),
                Err(TokenError::BadSignature)
            );
        }
    }
}
