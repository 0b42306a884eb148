//! The tier's key. The processes of the medium tier meet only through Redis,
//! and whoever else can write to that Redis must not be able to speak for
//! them. Every request a gateway pushes and every message the bus carries
//! ends in a tag: HMAC-SHA256 under the tier's key, truncated to 128 bits,
//! over a domain (what kind of message), the name it was written under (a
//! channel), and the bytes. A message whose tag does not check is dropped
//! and counted by its reader.

use bytes::{BufMut as _, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the tag at the end of every sealed message.
pub const TAG_LEN: usize = 16;
/// Fewest bytes a tier key may have.
pub const MIN_KEY_LEN: usize = 32;

/// What a message is, bound into its tag, so that one kind can never be
/// passed off as another.
#[derive(Debug, Clone, Copy)]
pub enum Domain {
    /// A request in a list, from a gateway to the core.
    Request,
    /// A message on a bus channel: events, revocations, answers.
    Bus,
}

impl Domain {
    fn label(self) -> &'static [u8] {
        match self {
            Domain::Request => b"superapp request\0",
            Domain::Bus => b"superapp bus\0",
        }
    }
}

/// The key every process of one tier shares (`redis.tier_key`).
#[derive(Clone)]
pub struct TierKey(Hmac<Sha256>);

impl std::fmt::Debug for TierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TierKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the tier key must hold at least {MIN_KEY_LEN} bytes")]
pub struct ShortKey;

impl TierKey {
    pub fn new(key: &[u8]) -> Result<Self, ShortKey> {
        if key.len() < MIN_KEY_LEN {
            return Err(ShortKey);
        }
        Hmac::new_from_slice(key).map(Self).map_err(|_| ShortKey)
    }

    fn mac(&self, domain: Domain, name: &str, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(domain.label());
        mac.update(&(name.len() as u64).to_be_bytes());
        mac.update(name.as_bytes());
        mac.update(bytes);
        mac
    }

    /// `bytes` followed by their tag.
    pub fn seal(&self, domain: Domain, name: &str, bytes: &[u8]) -> Bytes {
        let tag = self.mac(domain, name, bytes).finalize().into_bytes();
        let mut sealed = BytesMut::with_capacity(bytes.len() + TAG_LEN);
        sealed.put_slice(bytes);
        sealed.put_slice(&tag[..TAG_LEN]);
        sealed.freeze()
    }

    /// The bytes of a sealed message, if its tag checks (compared in
    /// constant time).
    pub fn open(&self, domain: Domain, name: &str, sealed: Bytes) -> Option<Bytes> {
        let split = sealed.len().checked_sub(TAG_LEN)?;
        let (bytes, tag) = sealed.split_at(split);
        self.mac(domain, name, bytes)
            .verify_truncated_left(tag)
            .ok()?;
        Some(sealed.slice(..split))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(seed: u8) -> TierKey {
        TierKey::new(&[seed; 32]).unwrap()
    }

    #[test]
    #[ignore = "a benchmark; prints the time to seal and to open a message"]
    fn cost_of_sealing_and_opening() {
        let (key, rounds) = (key(1), 200_000u32);
        for size in [64, 512, 4_096] {
            let bytes = vec![7u8; size];
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(key.seal(Domain::Bus, "sa:u.12345", &bytes));
            }
            let seal = started.elapsed() / rounds;
            let sealed = key.seal(Domain::Bus, "sa:u.12345", &bytes);
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(key.open(Domain::Bus, "sa:u.12345", sealed.clone()));
            }
            let open = started.elapsed() / rounds;
            println!("{size} bytes: seal {seal:?}, open {open:?}");
        }
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(TierKey::new(&[7; 31]).is_err());
    }

    proptest! {
        #[test]
        fn sealed_bytes_open_only_unchanged_under_their_key_domain_and_name(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            flip in any::<prop::sample::Index>(),
        ) {
            let sealed = key(1).seal(Domain::Bus, "sa:u.1", &bytes);
            let opened = key(1).open(Domain::Bus, "sa:u.1", sealed.clone());
            prop_assert_eq!(opened.as_deref(), Some(&bytes[..]));
            prop_assert!(key(2).open(Domain::Bus, "sa:u.1", sealed.clone()).is_none());
            prop_assert!(key(1).open(Domain::Request, "sa:u.1", sealed.clone()).is_none());
            prop_assert!(key(1).open(Domain::Bus, "sa:u.2", sealed.clone()).is_none());
            let mut changed = sealed.to_vec();
            let at = flip.index(changed.len());
            changed[at] ^= 1;
            prop_assert!(key(1).open(Domain::Bus, "sa:u.1", Bytes::from(changed)).is_none());
            prop_assert!(key(1).open(Domain::Bus, "sa:u.1", sealed.slice(..TAG_LEN - 1)).is_none());
        }
    }
}
