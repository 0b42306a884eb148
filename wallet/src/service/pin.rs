//! The payment PIN: argon2id hashes, tries counted before they are checked
//! (so concurrent guesses cannot pass the lock), and a memory of PINs
//! verified lately.
//!
//! Why the memory: a payment needs its PIN, and an argon2id verification
//! costs tens of milliseconds of a core by design, which would cap a
//! wallet's payments at a few dozen a second per core. A right PIN is
//! remembered for [`REMEMBER_MS`] as an HMAC-SHA256, under a key drawn at
//! start and never stored, of the user, the PIN and its hash; a payment
//! whose PIN matches it skips argon2id. A PIN that does not match always
//! goes through a counted try and argon2id, so the memory never helps a
//! guess; a new PIN has a new hash, so the old one is not recognised.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::error::WalletError;
use crate::model::{PinRecord, UserId};
use crate::policy;
use crate::store::WalletStore;

/// How long a verified PIN is recognised without argon2id.
pub const REMEMBER_MS: i64 = 5 * 60_000;
/// Users remembered at most (about 80 bytes each); all are forgotten at
/// the bound, which costs each one argon2id verification.
const MAX_REMEMBERED: usize = 1_000_000;
/// argon2id hashes at once at most. Each takes 19 MiB and a core for tens
/// of milliseconds: a burst of payments with PINs not yet remembered (a
/// restart, a crowd opening one red packet) would otherwise start as many
/// as the blocking pool has threads, hundreds, and hold gigabytes. The rest
/// wait their turn, as the account room's log-ins do.
const HASHING_SLOTS: usize = 4;

pub(super) struct Pins {
    lock_ms: i64,
    key: [u8; 32],
    /// User -> (HMAC of user, PIN and hash; when verified).
    verified: Mutex<HashMap<UserId, ([u8; 32], i64)>>,
    hashing: tokio::sync::Semaphore,
}

impl Pins {
    pub(super) fn new(lock_secs: u64) -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self {
            lock_ms: i64::try_from(lock_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            key,
            verified: Mutex::new(HashMap::new()),
            hashing: tokio::sync::Semaphore::new(HASHING_SLOTS),
        }
    }

    /// Checks `pin` as `user`'s payment PIN.
    pub(super) async fn check(
        &self,
        store: &dyn WalletStore,
        user: UserId,
        pin: &str,
        now_ms: i64,
    ) -> Result<(), WalletError> {
        if !policy::pin_well_formed(pin) {
            return Err(WalletError::InvalidPin);
        }
        let record = store.pin(user).await?.ok_or(WalletError::PinNotSet)?;
        policy::pin_open(&record, now_ms)?;
        if self.recalls(user, &self.mark(user, pin, &record.hash), now_ms) {
            return Ok(());
        }
        let counted = store.reserve_pin_try(user, now_ms, self.lock_ms).await?;
        let hash = counted.hash.clone();
        let candidate = pin.to_string();
        let right = self
            .hash_off_thread(move || verify(&candidate, &hash))
            .await?;
        if !right {
            return Err(if counted.locked_until_ms > now_ms {
                WalletError::PinLocked {
                    until_ms: counted.locked_until_ms,
                }
            } else {
                WalletError::WrongPin {
                    tries_left: policy::pin_tries_left(&counted),
                }
            });
        }
        let mark = self.mark(user, pin, &counted.hash);
        store
            .put_pin(
                user,
                PinRecord {
                    failures: 0,
                    locked_until_ms: 0,
                    updated_ms: now_ms,
                    ..counted
                },
            )
            .await?;
        self.remember(user, mark, now_ms);
        Ok(())
    }

    /// Sets a new PIN (checked for form and strength by the caller).
    pub(super) async fn set(
        &self,
        store: &dyn WalletStore,
        user: UserId,
        pin: &str,
        now_ms: i64,
    ) -> Result<(), WalletError> {
        let candidate = pin.to_string();
        let hash = self.hash_off_thread(move || hash(&candidate)).await??;
        store
            .put_pin(
                user,
                PinRecord {
                    hash,
                    failures: 0,
                    locked_until_ms: 0,
                    updated_ms: now_ms,
                },
            )
            .await?;
        self.forget(user);
        Ok(())
    }

    /// Runs an argon2id computation on the blocking pool, at most
    /// [`HASHING_SLOTS`] at once.
    async fn hash_off_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WalletError> {
        let _slot = self
            .hashing
            .acquire()
            .await
            .map_err(|e| WalletError::Dependency(e.to_string()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| WalletError::Dependency(e.to_string()))
    }

    fn mark(&self, user: UserId, pin: &str, hash: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            // HMAC takes a key of any length.
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(&user.0.to_be_bytes());
        mac.update(pin.as_bytes());
        mac.update(hash.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn recalls(&self, user: UserId, mark: &[u8; 32], now_ms: i64) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified.get(&user).is_some_and(|(known, at)| {
            // Both are HMAC outputs under a secret key: comparing them
            // reveals nothing of the PIN, whatever the timing.
            known == mark && (*at..at + REMEMBER_MS).contains(&now_ms)
        })
    }

    fn remember(&self, user: UserId, mark: [u8; 32], now_ms: i64) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_REMEMBERED {
            verified.clear();
        }
        verified.insert(user, (mark, now_ms));
    }

    fn forget(&self, user: UserId) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified.remove(&user);
    }
}

/// argon2id at the crate's defaults (19 MiB, 2 passes: OWASP's minimum).
fn hash(pin: &str) -> Result<String, WalletError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(pin.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| WalletError::Dependency(e.to_string()))
}

fn verify(pin: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(pin.as_bytes(), &parsed)
            .is_ok()
    })
}
