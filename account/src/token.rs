//! Signed access tokens: `v1.<payload>.<mac>`, both parts base64url, the MAC an
//! HMAC-SHA256 over `v1.<payload>` with the server's key. Short-lived by design:
//! revocation before expiry is the session check the verifier's caller makes.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use superapp_kit::secret::Secret;
use superapp_proto::ids::UserId;

type HmacSha256 = Hmac<Sha256>;

/// What an access token says: who, which session family, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// The session (refresh-token family) the token was issued for.
    pub sid: u64,
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
}

#[derive(Clone)]
pub struct TokenSigner {
    key: Secret<Vec<u8>>,
}

impl TokenSigner {
    pub fn new(key: Secret<Vec<u8>>) -> Self {
        Self { key }
    }

    /// Reads the key from `path`, or creates a random 256-bit one readable by the
    /// owner only.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(std::io::Error::other(format!(
                    "{} may be read by others (mode {mode:o}); it signs every access token: \
                     make it its owner's alone (chmod 600) and start again",
                    path.display()
                )));
            }
        }
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() >= 32 => return Ok(Self::new(Secret::new(bytes))),
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} holds fewer than 32 bytes",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path)?;
        file.write_all(&key)?;
        file.sync_all()?;
        Ok(Self::new(Secret::new(key)))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        #[allow(clippy::expect_used)]
        HmacSha256::new_from_slice(self.key.expose()).expect("hmac takes any key length")
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("v1.{}", B64.encode(payload));
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{signed}.{}", B64.encode(tag))
    }

    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, TokenError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let payload = signed.strip_prefix("v1.").ok_or(TokenError::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
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
    use proptest::prelude::*;

    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::new(Secret::new(vec![7; 32]))
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused_with_the_fix_named() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let created = TokenSigner::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = TokenSigner::load_or_create(&path)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let again = TokenSigner::load_or_create(&path).unwrap();
        let claims = Claims {
            sub: UserId(1),
            sid: 2,
            exp: i64::MAX,
        };
        assert_eq!(again.verify(&created.sign(&claims), 0).unwrap(), claims);
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let claims = Claims {
            sub: UserId(1),
            sid: 2,
            exp: 1_000,
        };
        let token = signer().sign(&claims);
        assert_eq!(signer().verify(&token, 999), Ok(claims));
        assert_eq!(signer().verify(&token, 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_signed_with_another_key_or_altered_is_refused() {
        let token = signer().sign(&Claims {
            sub: UserId(1),
            sid: 2,
            exp: 1_000,
        });
        let other = TokenSigner::new(Secret::new(vec![8; 32]));
        assert_eq!(other.verify(&token, 0), Err(TokenError::BadSignature));
        let forged = signer().sign(&Claims {
            sub: UserId(9),
            sid: 2,
            exp: 1_000,
        });
        let (forged_payload, _) = forged.rsplit_once('.').unwrap();
        let (_, tag) = token.rsplit_once('.').unwrap();
        assert_eq!(
            signer().verify(&format!("{forged_payload}.{tag}"), 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(signer().verify("garbage", 0), Err(TokenError::Malformed));
    }

    #[test]
    fn the_key_file_is_created_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let a = TokenSigner::load_or_create(&path).unwrap();
        let b = TokenSigner::load_or_create(&path).unwrap();
        let claims = Claims {
            sub: UserId(1),
            sid: 1,
            exp: 10,
        };
        assert_eq!(b.verify(&a.sign(&claims), 0), Ok(claims));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    fn claims() -> impl Strategy<Value = Claims> {
        (any::<u64>(), any::<u64>(), any::<i64>()).prop_map(|(sub, sid, exp)| Claims {
            sub: UserId(sub),
            sid,
            exp,
        })
    }

    proptest! {
        #[test]
        fn a_signed_token_verifies_to_its_claims(
            key in proptest::collection::vec(any::<u8>(), 32..64),
            claims in claims(),
            now in any::<i64>(),
        ) {
            let signer = TokenSigner::new(Secret::new(key));
            let verified = signer.verify(&signer.sign(&claims), now);
            if claims.exp > now {
                prop_assert_eq!(verified, Ok(claims));
            } else {
                prop_assert_eq!(verified, Err(TokenError::Expired));
            }
        }

        #[test]
        fn a_token_with_any_character_changed_is_refused(
            claims in claims(),
            at in any::<prop::sample::Index>(),
            with in any::<char>(),
        ) {
            let token = signer().sign(&claims);
            let mut chars: Vec<char> = token.chars().collect();
            let i = at.index(chars.len());
            prop_assume!(chars[i] != with);
            chars[i] = with;
            let altered: String = chars.into_iter().collect();
            prop_assert!(signer().verify(&altered, i64::MIN).is_err(), "{}", altered);
        }

        #[test]
        fn a_token_cut_short_or_extended_is_refused(
            claims in claims(),
            at in any::<prop::sample::Index>(),
            tail in "[A-Za-z0-9_.=-]{1,4}",
        ) {
            let token = signer().sign(&claims);
            let cut = &token[..at.index(token.len())];
            prop_assert!(signer().verify(cut, i64::MIN).is_err(), "{}", cut);
            let extended = format!("{token}{tail}");
            prop_assert!(signer().verify(&extended, i64::MIN).is_err(), "{}", extended);
        }
    }
}
