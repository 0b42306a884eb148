//! TURN credentials by the TURN REST API convention that coturn implements
//! with `use-auth-secret`: the username is `<expiry, unix seconds>:<user
//! id>` and the password is base64(HMAC-SHA1(secret, username)). The TURN
//! server recomputes the HMAC from the shared secret and refuses a username
//! whose expiry has passed, so nothing is stored and nothing is revoked.

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha1::Sha1;

use crate::model::UserId;

/// Credentials for one user, valid until `expires_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    pub username: String,
    pub credential: String,
    pub expires_secs: i64,
}

/// Credentials for `user` valid `ttl_secs` from `now_ms`.
pub fn credentials(secret: &[u8], user: UserId, now_ms: i64, ttl_secs: u64) -> TurnCredentials {
    let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
    let expires_secs = (now_ms / 1000).saturating_add(ttl);
    let username = format!("{expires_secs}:{}", user.0);
    TurnCredentials {
        credential: password(secret, &username),
        username,
        expires_secs,
    }
}

/// base64(HMAC-SHA1(secret, username)): the password coturn expects.
pub fn password(secret: &[u8], username: &str) -> String {
    // HMAC takes a key of any length: `new_from_slice` never fails for it.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hmac_is_rfc_2202_s_first_test_case() {
        // RFC 2202 §3, test case 1: key 0x0b * 20, data "Hi There".
        let expected = [
            0xb6, 0x17, 0x31, 0x86, 0x55, 0x05, 0x72, 0x64, 0xe2, 0x8b, 0xc0, 0xb6, 0xfb, 0x37,
            0x8c, 0x8e, 0xf1, 0x46, 0xbe, 0x00,
        ];
        let got = password(&[0x0b; 20], "Hi There");
        assert_eq!(
            got,
            base64::engine::general_purpose::STANDARD.encode(expected)
        );
    }

    #[test]
    fn credentials_name_their_expiry_and_user_and_match_a_known_password() {
        // The password computed apart, with
        // `printf %s 1700003600:42 | openssl dgst -sha1 -hmac north-wind-secret -binary | base64`.
        let c = credentials(b"north-wind-secret", UserId(42), 1_700_000_000_999, 3600);
        assert_eq!(c.username, "1700003600:42");
        assert_eq!(c.expires_secs, 1_700_003_600);
        assert_eq!(c.credential, "lX5Gk8AKmXn0FUqv/skP+33Jzio=");
    }
}
