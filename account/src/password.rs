//! argon2id hashing of passwords, with its memory reused (the rules a
//! password must meet are in [`crate::policy`]).

use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::AccountError;

/// argon2id with its memory reused. Each hash needs 19 MiB; allocating that
/// afresh for every log-in left the C allocator holding about 1 GiB after a
/// thousand of them (measured with `superapp-load idle --users 500`), so the
/// hasher keeps one buffer per concurrent hash and lends them out.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
}

/// Output length of a new hash, in bytes.
const HASH_LEN: usize = 32;

impl Hasher {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, AccountError> {
        let params = Params::new(memory_kib, iterations, 1, Some(HASH_LEN))
            .map_err(|e| AccountError::Internal(e.to_string()))?;
        Ok(Self {
            params,
            buffers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=...`), which records its own parameters so
    /// that stronger settings later still verify old hashes.
    pub fn hash(&self, password: &str) -> Result<String, AccountError> {
        let internal = |e: &dyn std::fmt::Display| AccountError::Internal(e.to_string());
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| internal(&e))?;
        let mut out = [0u8; HASH_LEN];
        self.compute(&self.params, password, salt_bytes, &mut out)
            .map_err(|e| internal(&e))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(|e| internal(&e))?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|e| internal(&e))?),
        };
        Ok(phc.to_string())
    }

    /// Verifies against a PHC string made by any argon2id parameters.
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        let check = || -> Option<bool> {
            let parsed = PasswordHash::new(phc).ok()?;
            if Algorithm::try_from(parsed.algorithm).ok()? != Algorithm::Argon2id {
                return None;
            }
            let params = Params::try_from(&parsed).ok()?;
            let expected = parsed.hash?;
            let mut salt_buf = [0u8; 64];
            let salt = parsed.salt?.decode_b64(&mut salt_buf).ok()?;
            let mut out = vec![0u8; expected.len()];
            self.compute(&params, password, salt, &mut out).ok()?;
            // Output compares in constant time.
            Some(Output::new(&out).ok()? == expected)
        };
        check().unwrap_or(false)
    }

    fn compute(
        &self,
        params: &Params,
        password: &str,
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), argon2::Error> {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let wanted = params.block_count();
        let lent = self.buffers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut blocks = match lent {
            Some(b) if b.len() == wanted => b,
            _ => vec![Block::default(); wanted],
        };
        let result =
            argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut blocks);
        // Only buffers of the current parameters are kept, at most one per slot.
        if wanted == self.params.block_count() {
            let mut buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
            if buffers.len() < crate::service::HASHING_SLOTS {
                buffers.push(blocks);
            }
        }
        result
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
    fn a_hash_verifies_its_password_only() {
        let hasher = Hasher::new(19 * 1024, 2).unwrap();
        let phc = hasher.hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher.verify("correct horse battery", &phc));
        assert!(!hasher.verify("wrong horse battery", &phc));
        assert!(!hasher.verify("x", "not a phc string"));
        // A hash made by the library's own API, with other parameters, verifies too.
        use argon2::password_hash::PasswordHasher as _;
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 3, 1, None).unwrap(),
        )
        .hash_password(b"correct horse battery", &salt)
        .unwrap()
        .to_string();
        assert!(hasher.verify("correct horse battery", &other));
        assert!(!hasher.verify("wrong", &other));
    }
}
