//! The sandbox verification provider: a complete, deterministic stand-in
//! for a real one, for development, tests and demonstrations. It consults
//! no registry. Every well-formed number it is given (the service has
//! already checked the format and the check character) is decided by its
//! 3-digit sequence code, characters 15 to 17:
//!
//! | sequence code | answer to the submission | answer to each later check |
//! |---|---|---|
//! | `999` | rejected, `mismatch` | the same |
//! | `998` | pending | verified |
//! | `997` | pending | rejected, `mismatch` |
//! | `996` | pending | pending: never decided (the service expires it after a day) |
//! | `995` | an error, as from a provider that is down | unknown: it was never received |
//! | any other | verified | the same |
//!
//! A repeated submission of an attempt answers what a check would, so a
//! retry never starts a second verification. The sandbox remembers the
//! last 100,000 attempts, in memory: after a restart a check answers
//! unknown and the service submits the attempt again.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use superapp_kit::BoxFuture;

use crate::model::Rejection;
use crate::ports::{ProviderAnswer, ProviderError, VerificationProvider, VerificationRequest};

/// Attempts remembered at most; beyond, the oldest is forgotten.
const MAX_ATTEMPTS: usize = 100_000;

#[derive(Default)]
pub struct SandboxProvider {
    attempts: Mutex<Attempts>,
}

#[derive(Default)]
struct Attempts {
    /// Each attempt's answer to its next check.
    answers: HashMap<u64, ProviderAnswer>,
    order: VecDeque<u64>,
}

impl SandboxProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// The answer to a first submission, and the answer to the checks after.
    fn rules(sequence: &str) -> Result<(ProviderAnswer, ProviderAnswer), ProviderError> {
        let mismatch = ProviderAnswer::Rejected(Rejection::Mismatch);
        Ok(match sequence {
            "999" => (mismatch, mismatch),
            "998" => (ProviderAnswer::Pending, ProviderAnswer::Verified),
            "997" => (ProviderAnswer::Pending, mismatch),
            "996" => (ProviderAnswer::Pending, ProviderAnswer::Pending),
            "995" => {
                return Err(ProviderError::Unavailable(
                    "the sandbox is down for sequence code 995".into(),
                ));
            }
            _ => (ProviderAnswer::Verified, ProviderAnswer::Verified),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Attempts> {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl VerificationProvider for SandboxProvider {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn submit(
        &self,
        request: VerificationRequest,
    ) -> BoxFuture<'_, Result<ProviderAnswer, ProviderError>> {
        let answer = (|| {
            let mut attempts = self.lock();
            if let Some(known) = attempts.answers.get(&request.attempt_id) {
                return Ok(*known);
            }
            let sequence = request.id_number.get(14..17).unwrap_or_default();
            let (now, later) = Self::rules(sequence)?;
            if attempts.order.len() >= MAX_ATTEMPTS
                && let Some(oldest) = attempts.order.pop_front()
            {
                attempts.answers.remove(&oldest);
            }
            attempts.answers.insert(request.attempt_id, later);
            attempts.order.push_back(request.attempt_id);
            Ok(now)
        })();
        Box::pin(async move { answer })
    }

    fn check(&self, attempt_id: u64) -> BoxFuture<'_, Result<ProviderAnswer, ProviderError>> {
        let answer = self
            .lock()
            .answers
            .get(&attempt_id)
            .copied()
            .unwrap_or(ProviderAnswer::Unknown);
        Box::pin(async move { Ok(answer) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(attempt_id: u64, sequence: &str) -> VerificationRequest {
        VerificationRequest {
            attempt_id,
            legal_name: "张三".into(),
            id_number: format!("11010519491231{sequence}0"),
        }
    }

    #[tokio::test]
    async fn the_sequence_code_decides_at_once_or_at_the_first_check() {
        let sandbox = SandboxProvider::new();
        let mismatch = ProviderAnswer::Rejected(Rejection::Mismatch);
        let cases = [
            ("002", ProviderAnswer::Verified, ProviderAnswer::Verified),
            ("999", mismatch, mismatch),
            ("998", ProviderAnswer::Pending, ProviderAnswer::Verified),
            ("997", ProviderAnswer::Pending, mismatch),
            ("996", ProviderAnswer::Pending, ProviderAnswer::Pending),
        ];
        for (attempt, (sequence, first, later)) in cases.into_iter().enumerate() {
            let attempt = attempt as u64;
            assert_eq!(sandbox.check(attempt).await, Ok(ProviderAnswer::Unknown));
            assert_eq!(
                sandbox.submit(request(attempt, sequence)).await,
                Ok(first),
                "{sequence}"
            );
            assert_eq!(sandbox.check(attempt).await, Ok(later), "{sequence}");
            assert_eq!(sandbox.check(attempt).await, Ok(later), "{sequence}");
            // A retried submission starts nothing new.
            assert_eq!(
                sandbox.submit(request(attempt, sequence)).await,
                Ok(later),
                "{sequence}"
            );
        }
    }

    #[tokio::test]
    async fn sequence_995_is_a_provider_that_is_down() {
        let sandbox = SandboxProvider::new();
        assert!(matches!(
            sandbox.submit(request(1, "995")).await,
            Err(ProviderError::Unavailable(_))
        ));
        assert_eq!(sandbox.check(1).await, Ok(ProviderAnswer::Unknown));
    }

    #[tokio::test]
    async fn the_oldest_attempts_are_forgotten_past_the_cap() {
        let sandbox = SandboxProvider::new();
        for attempt in 0..=MAX_ATTEMPTS as u64 {
            sandbox.submit(request(attempt, "998")).await.unwrap();
        }
        assert_eq!(sandbox.check(0).await, Ok(ProviderAnswer::Unknown));
        assert_eq!(sandbox.check(1).await, Ok(ProviderAnswer::Verified));
        assert_eq!(sandbox.lock().answers.len(), MAX_ATTEMPTS);
    }
}
