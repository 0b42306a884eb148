//! Access tokens (`account/src/token.rs`), as a gateway or the core verifies
//! what a client sends at the handshake.
//!
//! Verifying any string never panics and never accepts a string that is not
//! exactly a token the key signed. A signed token verifies to its claims
//! until it expires; the same token with any edit (a byte changed, inserted,
//! removed, or the token cut short) is refused.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use superapp_account::token::{Claims, MAX_CLOCK_SKEW_MS, TokenSigner};
use superapp_proto::UserId;

/// The access lifetime the fuzzed signer allows (the default, 900 s).
const LIFETIME_MS: i64 = 900_000;

#[derive(Debug, Arbitrary)]
enum Edit {
    Set(u16, u8),
    Insert(u16, u8),
    Remove(u16),
    Truncate(u16),
}

#[derive(Debug, Arbitrary)]
struct Input {
    key: [u8; 32],
    sub: u64,
    sid: u64,
    iat: i64,
    exp: i64,
    now: i64,
    edits: Vec<Edit>,
    sent: String,
}

fn edited(token: &str, edits: &[Edit]) -> Option<String> {
    let mut bytes = token.as_bytes().to_vec();
    for edit in edits {
        let at = |i: u16, len: usize| usize::from(i) % (len + 1);
        match *edit {
            Edit::Set(i, b) if !bytes.is_empty() => {
                let i = usize::from(i) % bytes.len();
                bytes[i] = b;
            }
            Edit::Insert(i, b) => bytes.insert(at(i, bytes.len()), b),
            Edit::Remove(i) if !bytes.is_empty() => {
                bytes.remove(usize::from(i) % bytes.len());
            }
            Edit::Truncate(i) => bytes.truncate(at(i, bytes.len())),
            _ => {}
        }
    }
    String::from_utf8(bytes).ok()
}

fuzz_target!(|input: Input| {
    let signer = TokenSigner::from_seed(&input.key, LIFETIME_MS);
    if let Ok(claims) = signer.verify(&input.sent, input.now) {
        assert_eq!(signer.sign(&claims), input.sent, "accepted a forgery");
    }
    let claims = Claims {
        sub: UserId(input.sub),
        sid: input.sid,
        iat: input.iat,
        exp: input.exp,
    };
    let token = signer.sign(&claims);
    let verified = signer.verify(&token, input.now);
    let within_bounds = claims.iat <= input.now.saturating_add(MAX_CLOCK_SKEW_MS)
        && claims.exp <= claims.iat.saturating_add(LIFETIME_MS + MAX_CLOCK_SKEW_MS);
    if within_bounds && claims.exp > input.now {
        assert_eq!(verified, Ok(claims));
    } else {
        assert!(verified.is_err());
    }
    if let Some(mutated) = edited(&token, &input.edits)
        && mutated != token
    {
        assert!(
            signer.verify(&mutated, input.now).is_err(),
            "accepted an edited token: {mutated}"
        );
    }
});
