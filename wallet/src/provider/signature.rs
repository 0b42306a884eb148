//! Callback signatures: lowercase hex HMAC-SHA256 under the secret shared
//! with the provider, over `timestamp + "\n" + nonce + "\n" + body`.
//!
//! WeChat Pay v3 signs "timestamp\nnonce\nbody\n" with the platform's RSA key;
//! a shared HMAC key gives the same guarantee between two parties who both
//! hold the secret, with no certificate to fetch and rotate. The timestamp and
//! nonce are inside the signed message so that neither can be changed to pass
//! an old callback off as fresh, or a replay off as new.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// Hex digits of a signature: 32 bytes of HMAC-SHA256.
const SIGNATURE_HEX_LEN: usize = 64;

fn mac(secret: &[u8], timestamp: &str, nonce: &str, body: &[u8]) -> Hmac<Sha256> {
    // Infallible: HMAC takes a key of any length.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// The signature of a callback: lowercase hex of HMAC-SHA256 over
/// `timestamp + "\n" + nonce + "\n" + body`. A timestamp or nonce holding a
/// newline never verifies (see [`verify_signature`]).
pub fn sign(secret: &[u8], timestamp: &str, nonce: &str, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, nonce, body).finalize().into_bytes();
    let mut out = String::with_capacity(SIGNATURE_HEX_LEN);
    for byte in tag {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte & 0x0f));
    }
    out
}

/// Whether `signature` is [`sign`]'s answer for these fields, compared in
/// constant time. Only the exact lowercase spelling verifies, so that a
/// callback has one signature and any change to it is a refusal. A timestamp
/// or nonce holding a newline is refused: the newline separates the fields,
/// and one inside a field could move bytes from one field to the next under
/// the same signature.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    nonce: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    if timestamp.contains('\n') || nonce.contains('\n') {
        return false;
    }
    let Some(tag) = decode_lower_hex(signature) else {
        return false;
    };
    mac(secret, timestamp, nonce, body)
        .verify_slice(&tag)
        .is_ok()
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

fn decode_lower_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != SIGNATURE_HEX_LEN {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"sandbox-secret";

    #[test]
    fn a_signature_is_hmac_sha256_of_timestamp_nonce_and_body_in_lowercase_hex() {
        // Computed independently: Python's hmac.new(secret, msg, sha256).hexdigest().
        assert_eq!(
            sign(SECRET, "1700000000000", "nonce0123456789ab", br#"{"a":1}"#),
            "31d1cc224c03a7d62147a44745ed31fd13ca8d608489649611f6092552e8af3a"
        );
    }

    #[test]
    fn a_signature_verifies_for_its_own_fields() {
        let sig = sign(SECRET, "1700000000000", "n0nce-n0nce-n0nce", b"body");
        assert!(verify_signature(
            SECRET,
            "1700000000000",
            "n0nce-n0nce-n0nce",
            b"body",
            &sig
        ));
    }

    #[test]
    fn another_secret_an_uppercase_spelling_or_a_short_signature_does_not_verify() {
        let sig = sign(SECRET, "1", "n", b"b");
        assert!(!verify_signature(b"other", "1", "n", b"b", &sig));
        assert!(!verify_signature(
            SECRET,
            "1",
            "n",
            b"b",
            &sig.to_uppercase()
        ));
        assert!(!verify_signature(SECRET, "1", "n", b"b", &sig[..62]));
        assert!(!verify_signature(SECRET, "1", "n", b"b", ""));
    }

    #[test]
    fn a_newline_inside_the_timestamp_or_nonce_never_verifies() {
        // Both spell the message "1\n2\n3\nbody"; neither may pass as the other.
        let sig = sign(SECRET, "1\n2", "3", b"body");
        assert_eq!(sig, sign(SECRET, "1", "2\n3", b"body"));
        assert!(!verify_signature(SECRET, "1\n2", "3", b"body", &sig));
        assert!(!verify_signature(SECRET, "1", "2\n3", b"body", &sig));
    }

    /// Which field of a signed callback a case changes.
    #[derive(Debug, Clone)]
    enum Change {
        Timestamp(String),
        Nonce(String),
        Body(Vec<u8>),
        /// Replaces the signature's hex digit at this index with another.
        SignatureDigit(usize, u8),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            "[0-9]{0,16}".prop_map(Change::Timestamp),
            "[A-Za-z0-9_-]{0,64}".prop_map(Change::Nonce),
            proptest::collection::vec(any::<u8>(), 0..128).prop_map(Change::Body),
            (0..SIGNATURE_HEX_LEN, 1u8..16).prop_map(|(i, d)| Change::SignatureDigit(i, d)),
        ]
    }

    proptest! {
        #[test]
        fn any_change_to_timestamp_nonce_body_or_signature_fails(
            secret in proptest::collection::vec(any::<u8>(), 0..64),
            timestamp in "[0-9]{1,16}",
            nonce in "[A-Za-z0-9_-]{16,64}",
            body in proptest::collection::vec(any::<u8>(), 0..128),
            change in change(),
        ) {
            let signature = sign(&secret, &timestamp, &nonce, &body);
            prop_assert!(verify_signature(&secret, &timestamp, &nonce, &body, &signature));

            let (mut t, mut n, mut b, mut s) =
                (timestamp.clone(), nonce.clone(), body.clone(), signature.clone());
            match change {
                Change::Timestamp(v) => { prop_assume!(v != timestamp); t = v; }
                Change::Nonce(v) => { prop_assume!(v != nonce); n = v; }
                Change::Body(v) => { prop_assume!(v != body); b = v; }
                Change::SignatureDigit(i, step) => {
                    let digits = b"0123456789abcdef";
                    let at = digits.iter().position(|&d| d == s.as_bytes()[i]).unwrap_or(0);
                    let new = char::from(digits[(at + usize::from(step)) % 16]);
                    s.replace_range(i..=i, new.encode_utf8(&mut [0; 4]));
                }
            }
            prop_assert!(!verify_signature(&secret, &t, &n, &b, &s));
        }
    }
}
