//! Real-name verification: a user submits a legal name and a resident
//! identity number; the number is checked ([`crate::policy::real_name`]),
//! sealed ([`crate::seal`]), recorded as pending, and passed to the
//! verification provider ([`crate::ports::VerificationProvider`]).
//!
//! Pending, then decided. The submission is recorded before the provider is
//! asked, under an attempt id that is also the provider's reference, so the
//! store's rules (one pending submission per user, one account per number,
//! the daily limit) hold before any provider is paid, and nothing is lost
//! if the process stops while the provider is asked. Most providers decide
//! within seconds: the submission's answer then carries the decision. When
//! the provider answers pending, fails, or takes longer than
//! `real_name.provider_timeout_ms`, the submission stays pending; each time
//! its owner asks for the status (at most once per [`CHECK_INTERVAL_MS`]),
//! the provider is asked about the attempt, and an attempt the provider
//! never received is submitted again under the same id. A submission
//! undecided after a day ends rejected as `expired`.

use std::sync::Arc;
use std::time::Duration;

use superapp_kit::clock::SharedClock;
use superapp_kit::ids::IdGen;

use crate::AccountError;
use crate::config::RealNameConfig;
use crate::model::{Decision, RealNameRecord, RealNameState, RealNameView, Rejection, UserId};
use crate::policy::real_name::{self as policy, IdNumber, LegalName, mask_id_number};
use crate::ports::{ProviderAnswer, ProviderError, VerificationProvider, VerificationRequest};
use crate::seal::RealNameKey;
use crate::store::RealNameStore;
use crate::throttle::Throttle;

/// A pending submission's provider is asked about it at most this often
/// per user, however often the status is read.
pub const CHECK_INTERVAL_MS: i64 = 5_000;

pub struct RealNames {
    store: Arc<dyn RealNameStore>,
    key: RealNameKey,
    /// None when `real_name.provider` is `disabled`.
    provider: Option<Arc<dyn VerificationProvider>>,
    clock: SharedClock,
    ids: Arc<IdGen>,
    submissions_per_day: u32,
    provider_timeout: Duration,
    /// The last provider check per user ([`CHECK_INTERVAL_MS`]).
    checks: Throttle,
}

impl RealNames {
    pub fn new(
        store: Arc<dyn RealNameStore>,
        key: RealNameKey,
        provider: Option<Arc<dyn VerificationProvider>>,
        clock: SharedClock,
        ids: Arc<IdGen>,
        config: &RealNameConfig,
    ) -> Self {
        Self {
            store,
            key,
            provider,
            clock,
            ids,
            submissions_per_day: config.submissions_per_day,
            provider_timeout: Duration::from_millis(config.provider_timeout_ms),
            checks: Throttle::new(1, CHECK_INTERVAL_MS),
        }
    }

    /// Submits `user`'s legal name and ID number. Bad input is refused
    /// before anything is written; so are a user already verified or with
    /// a submission pending. The answer is the new status: verified or
    /// rejected when the provider decided at once, pending otherwise.
    #[tracing::instrument(skip_all, fields(user_id = user.0))]
    pub async fn submit(
        &self,
        user: UserId,
        legal_name: &str,
        id_number: &str,
    ) -> Result<RealNameView, AccountError> {
        let provider = self
            .provider
            .as_ref()
            .ok_or(AccountError::RealNameUnavailable)?;
        let now = self.clock.now_ms();
        let name = LegalName::parse(legal_name)?;
        let number = IdNumber::parse(id_number, policy::china_date(now))?;
        let record = RealNameRecord {
            user_id: user,
            attempt_id: self.ids.next(),
            state: RealNameState::Pending,
            sealed: self.key.seal(user, &number, &name),
            number_hash: self.key.number_hash(&number),
            submitted_at_ms: now,
            decided_at_ms: None,
        };
        self.store
            .submit_real_name(record.clone(), self.submissions_per_day)
            .await?;
        tracing::info!(attempt_id = record.attempt_id, "real-name submitted");
        let request = VerificationRequest {
            attempt_id: record.attempt_id,
            legal_name: name.as_str().to_string(),
            id_number: number.as_str().to_string(),
        };
        let answer = self.ask(provider.submit(request)).await;
        let record = self.settle(record, answer).await?;
        Ok(self.view(&record))
    }

    /// `user`'s own verification: the status, the legal name they gave and
    /// the ID number masked. A pending submission is first brought up to
    /// date with the provider.
    #[tracing::instrument(skip_all, fields(user_id = user.0))]
    pub async fn status(&self, user: UserId) -> Result<RealNameView, AccountError> {
        let Some(record) = self.store.real_name(user).await? else {
            return Ok(RealNameView::unverified());
        };
        let record = if record.state == RealNameState::Pending {
            self.follow_up(record).await?
        } else {
            record
        };
        Ok(self.view(&record))
    }

    /// Whether `user` is verified: what other rooms ask (the wallet before
    /// money moves). A read of the store alone; it never calls the provider.
    pub async fn is_verified(&self, user: UserId) -> Result<bool, AccountError> {
        Ok(self
            .store
            .real_name(user)
            .await?
            .is_some_and(|r| r.state == RealNameState::Verified))
    }

    /// The name of the provider in use, None when disabled.
    pub fn provider_name(&self) -> Option<&'static str> {
        self.provider.as_ref().map(|p| p.name())
    }

    /// Asks the provider about a pending submission (unless it was asked
    /// within [`CHECK_INTERVAL_MS`]), and records what it decided.
    async fn follow_up(&self, record: RealNameRecord) -> Result<RealNameRecord, AccountError> {
        let now = self.clock.now_ms();
        let due = self
            .checks
            .check_and_record(&record.user_id.0.to_string(), now)
            .is_none();
        let answer = match &self.provider {
            Some(provider) if due => {
                let answer = self.ask(provider.check(record.attempt_id)).await;
                if answer == Ok(ProviderAnswer::Unknown) {
                    self.resubmit(provider.as_ref(), &record).await
                } else {
                    answer
                }
            }
            _ => Ok(ProviderAnswer::Pending),
        };
        self.settle(record, answer).await
    }

    /// Submits a recorded attempt again, under its own id: the provider
    /// never received it (the process stopped before it asked, or the
    /// provider forgot).
    async fn resubmit(
        &self,
        provider: &dyn VerificationProvider,
        record: &RealNameRecord,
    ) -> Result<ProviderAnswer, ProviderError> {
        let Some(unsealed) = self.open(record) else {
            return Err(ProviderError::Unavailable(
                "the submission does not open with this real_name.key".into(),
            ));
        };
        tracing::info!(
            attempt_id = record.attempt_id,
            "real-name submission unknown to the provider; submitted again"
        );
        let request = VerificationRequest {
            attempt_id: record.attempt_id,
            legal_name: unsealed.legal_name,
            id_number: unsealed.id_number,
        };
        self.ask(provider.submit(request)).await
    }

    /// The provider's answer within `real_name.provider_timeout_ms`.
    async fn ask(
        &self,
        answer: impl Future<Output = Result<ProviderAnswer, ProviderError>>,
    ) -> Result<ProviderAnswer, ProviderError> {
        tokio::time::timeout(self.provider_timeout, answer)
            .await
            .unwrap_or_else(|_| {
                Err(ProviderError::Unavailable(
                    "no answer within real_name.provider_timeout_ms".into(),
                ))
            })
    }

    /// Records a decision the answer carries, or the expiry of a
    /// submission still undecided after a day; returns the record as it
    /// now stands.
    async fn settle(
        &self,
        record: RealNameRecord,
        answer: Result<ProviderAnswer, ProviderError>,
    ) -> Result<RealNameRecord, AccountError> {
        let now = self.clock.now_ms();
        let decision = match answer {
            Ok(ProviderAnswer::Verified) => Some(Decision::Verified),
            Ok(ProviderAnswer::Rejected(reason)) => Some(Decision::Rejected(reason)),
            Ok(ProviderAnswer::Pending | ProviderAnswer::Unknown) => None,
            Err(e) => {
                tracing::warn!(
                    attempt_id = record.attempt_id,
                    error = %e,
                    "real-name provider failed; the submission stays pending"
                );
                None
            }
        };
        let decision = decision.or_else(|| {
            policy::expired(record.submitted_at_ms, now)
                .then_some(Decision::Rejected(Rejection::Expired))
        });
        let Some(decision) = decision else {
            return Ok(record);
        };
        match self
            .store
            .decide_real_name(record.user_id, record.attempt_id, decision, now)
            .await?
        {
            Some(decided) => {
                tracing::info!(
                    attempt_id = decided.attempt_id,
                    status = decided.state.status().as_str(),
                    "real-name decided"
                );
                Ok(decided)
            }
            // Decided meanwhile by another request: what stands is stored.
            None => Ok(self
                .store
                .real_name(record.user_id)
                .await?
                .unwrap_or(record)),
        }
    }

    fn open(&self, record: &RealNameRecord) -> Option<crate::seal::Unsealed> {
        self.key
            .open(record.user_id, &record.sealed)
            .inspect_err(|e| {
                tracing::error!(
                    user_id = record.user_id.0,
                    attempt_id = record.attempt_id,
                    error = %e,
                    "a real-name record does not open: was real_name.key (or real_name.key in the data dir) replaced?"
                );
            })
            .ok()
    }

    /// What the user is shown. A record that does not open (the key was
    /// replaced) still shows its status.
    fn view(&self, record: &RealNameRecord) -> RealNameView {
        let opened = self.open(record);
        RealNameView {
            status: record.state.status(),
            id_number_masked: opened.as_ref().map(|o| mask_id_number(&o.id_number)),
            legal_name: opened.map(|o| o.legal_name),
            rejection: match record.state {
                RealNameState::Rejected(reason) => Some(reason),
                RealNameState::Pending | RealNameState::Verified => None,
            },
            submitted_at_ms: Some(record.submitted_at_ms),
            decided_at_ms: record.decided_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use superapp_kit::clock::ManualClock;

    use super::*;
    use crate::config::RealNameConfig;
    use crate::model::RealNameStatus;
    use crate::policy::real_name::check_character;
    use crate::sandbox::SandboxProvider;
    use crate::store::SqliteAccountStore;

    /// 2026-06-01T00:00:00Z.
    const START_MS: i64 = 1_780_272_000_000;

    struct Setup {
        _dir: tempfile::TempDir,
        store: Arc<SqliteAccountStore>,
        clock: Arc<ManualClock>,
        real_names: RealNames,
    }

    fn setup_with(provider: Option<Arc<dyn VerificationProvider>>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteAccountStore::open(&dir.path().join("account.db"), None).unwrap());
        let clock = Arc::new(ManualClock::new(START_MS));
        let real_names = over(&store, &clock, provider);
        Setup {
            _dir: dir,
            store,
            clock,
            real_names,
        }
    }

    fn over(
        store: &Arc<SqliteAccountStore>,
        clock: &Arc<ManualClock>,
        provider: Option<Arc<dyn VerificationProvider>>,
    ) -> RealNames {
        let config = RealNameConfig {
            provider_timeout_ms: 100,
            ..RealNameConfig::default()
        };
        RealNames::new(
            store.clone(),
            RealNameKey::from_bytes(&[3; 32]),
            provider,
            clock.clone(),
            Arc::new(IdGen::new(1, clock.clone())),
            &config,
        )
    }

    fn setup() -> Setup {
        setup_with(Some(Arc::new(SandboxProvider::new())))
    }

    /// A valid number whose sequence code is `sequence` (the sandbox's rule).
    fn number(sequence: &str) -> String {
        let body = format!("11010519491231{sequence}");
        format!("{body}{}", check_character(&body).unwrap())
    }

    #[tokio::test]
    async fn a_number_the_sandbox_verifies_at_once_is_verified_in_the_answer() {
        let s = setup();
        let user = UserId(1);
        assert_eq!(
            s.real_names.status(user).await.unwrap(),
            RealNameView::unverified()
        );
        assert!(!s.real_names.is_verified(user).await.unwrap());
        let view = s
            .real_names
            .submit(user, " 张三 ", &number("002"))
            .await
            .unwrap();
        assert_eq!(view.status, RealNameStatus::Verified);
        assert_eq!(view.legal_name.as_deref(), Some("张三"));
        assert_eq!(view.id_number_masked.as_deref(), Some("1****************X"));
        assert_eq!(view.decided_at_ms, Some(START_MS));
        assert_eq!(s.real_names.status(user).await.unwrap(), view);
        assert!(s.real_names.is_verified(user).await.unwrap());
        let again = s.real_names.submit(user, "张三", &number("002")).await;
        assert!(matches!(again, Err(AccountError::AlreadyVerified)));
    }

    #[tokio::test]
    async fn a_pending_submission_is_decided_when_its_owner_next_asks() {
        let s = setup();
        let user = UserId(1);
        let view = s
            .real_names
            .submit(user, "张三", &number("998"))
            .await
            .unwrap();
        assert_eq!(view.status, RealNameStatus::Pending);
        assert!(!s.real_names.is_verified(user).await.unwrap());
        let again = s.real_names.submit(user, "张三", &number("998")).await;
        assert!(matches!(again, Err(AccountError::VerificationPending)));
        s.clock.advance_ms(1_000);
        let view = s.real_names.status(user).await.unwrap();
        assert_eq!(view.status, RealNameStatus::Verified);
        assert_eq!(view.decided_at_ms, Some(START_MS + 1_000));
        assert!(s.real_names.is_verified(user).await.unwrap());
    }

    #[tokio::test]
    async fn a_rejected_user_may_submit_again_and_the_number_is_free_for_others() {
        let s = setup();
        let rejected = s
            .real_names
            .submit(UserId(1), "张三", &number("999"))
            .await
            .unwrap();
        assert_eq!(rejected.status, RealNameStatus::Rejected);
        assert_eq!(rejected.rejection, Some(Rejection::Mismatch));
        // Pending, then rejected at the first check.
        let view = s
            .real_names
            .submit(UserId(1), "张三", &number("997"))
            .await
            .unwrap();
        assert_eq!(view.status, RealNameStatus::Pending);
        let view = s.real_names.status(UserId(1)).await.unwrap();
        assert_eq!(view.rejection, Some(Rejection::Mismatch));
        // The number is nobody's now.
        let other = s
            .real_names
            .submit(UserId(2), "李四", &number("997"))
            .await
            .unwrap();
        assert_eq!(other.status, RealNameStatus::Pending);
        // The third submission of the day.
        let verified = s
            .real_names
            .submit(UserId(1), "张三", &number("002"))
            .await
            .unwrap();
        assert_eq!(verified.status, RealNameStatus::Verified);
    }

    #[tokio::test]
    async fn one_number_verifies_one_account() {
        let s = setup();
        s.real_names
            .submit(UserId(1), "张三", &number("002"))
            .await
            .unwrap();
        let taken = s.real_names.submit(UserId(2), "张三", &number("002")).await;
        assert!(matches!(taken, Err(AccountError::IdNumberTaken)));
        assert_eq!(
            s.real_names.status(UserId(2)).await.unwrap(),
            RealNameView::unverified()
        );
    }

    #[tokio::test]
    async fn bad_input_is_refused_and_changes_nothing() {
        let s = setup();
        let user = UserId(1);
        let refused = [
            ("张三", "11010519491231002".to_string()),
            ("张三", "110105194912310021".to_string()),
            ("张三", "x".repeat(100_000)),
            ("张", number("002")),
            ("张\u{7}三", number("002")),
        ];
        for (name, id) in &refused {
            let answer = s.real_names.submit(user, name, id).await;
            assert!(
                matches!(
                    answer,
                    Err(AccountError::InvalidIdNumber(_) | AccountError::InvalidLegalName)
                ),
                "{name:?}"
            );
        }
        assert_eq!(
            RealNameStore::real_name(&*s.store, user).await.unwrap(),
            None
        );
        // None of them counted against the day's submissions.
        for sequence in ["999", "999"] {
            s.real_names
                .submit(user, "张三", &number(sequence))
                .await
                .unwrap();
        }
        s.real_names
            .submit(user, "张三", &number("002"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_fourth_submission_in_a_day_is_refused_until_the_first_is_a_day_old() {
        let s = setup();
        let user = UserId(1);
        for _ in 0..3 {
            s.real_names
                .submit(user, "张三", &number("999"))
                .await
                .unwrap();
            s.clock.advance_ms(60_000);
        }
        let refused = s.real_names.submit(user, "张三", &number("002")).await;
        let Err(AccountError::TooManySubmissions { retry_after_ms }) = refused else {
            panic!("expected too many submissions, got {refused:?}");
        };
        assert_eq!(
            retry_after_ms,
            (policy::SUBMISSION_WINDOW_MS - 180_000) as u64
        );
        s.clock.advance_ms(retry_after_ms as i64);
        let view = s
            .real_names
            .submit(user, "张三", &number("002"))
            .await
            .unwrap();
        assert_eq!(view.status, RealNameStatus::Verified);
    }

    #[tokio::test]
    async fn a_provider_that_is_down_leaves_the_submission_pending_until_it_expires() {
        let s = setup();
        let user = UserId(1);
        let view = s
            .real_names
            .submit(user, "张三", &number("995"))
            .await
            .unwrap();
        assert_eq!(view.status, RealNameStatus::Pending);
        s.clock.advance_ms(CHECK_INTERVAL_MS);
        let view = s.real_names.status(user).await.unwrap();
        assert_eq!(view.status, RealNameStatus::Pending);
        s.clock.advance_ms(policy::PENDING_LIMIT_MS);
        let view = s.real_names.status(user).await.unwrap();
        assert_eq!(view.status, RealNameStatus::Rejected);
        assert_eq!(view.rejection, Some(Rejection::Expired));
    }

    #[tokio::test]
    async fn the_provider_is_asked_about_a_pending_submission_at_most_every_five_seconds() {
        let s = setup();
        let user = UserId(1);
        s.real_names
            .submit(user, "张三", &number("998"))
            .await
            .unwrap();
        // Another process's provider (or one restarted) that never saw it.
        let forgetful = over(&s.store, &s.clock, Some(Arc::new(SandboxProvider::new())));
        // Unknown there, so submitted again: pending at first...
        let view = forgetful.status(user).await.unwrap();
        assert_eq!(view.status, RealNameStatus::Pending);
        // ...and not asked again within the interval...
        s.clock.advance_ms(CHECK_INTERVAL_MS - 1);
        assert_eq!(
            forgetful.status(user).await.unwrap().status,
            RealNameStatus::Pending
        );
        // ...then decided.
        s.clock.advance_ms(1);
        assert_eq!(
            forgetful.status(user).await.unwrap().status,
            RealNameStatus::Verified
        );
    }

    /// A provider that never answers.
    struct Silent;

    impl VerificationProvider for Silent {
        fn name(&self) -> &'static str {
            "silent"
        }

        fn submit(
            &self,
            _: VerificationRequest,
        ) -> superapp_kit::BoxFuture<'_, Result<ProviderAnswer, ProviderError>> {
            Box::pin(std::future::pending())
        }

        fn check(
            &self,
            _: u64,
        ) -> superapp_kit::BoxFuture<'_, Result<ProviderAnswer, ProviderError>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_provider_slower_than_its_timeout_leaves_the_submission_pending() {
        let s = setup_with(Some(Arc::new(Silent)));
        let view = s
            .real_names
            .submit(UserId(1), "张三", &number("002"))
            .await
            .unwrap();
        assert_eq!(view.status, RealNameStatus::Pending);
        assert_eq!(view.id_number_masked.as_deref(), Some("1****************X"));
    }

    #[tokio::test]
    async fn with_no_provider_submissions_are_refused_before_anything_is_written() {
        let s = setup_with(None);
        let refused = s.real_names.submit(UserId(1), "张三", &number("002")).await;
        assert!(matches!(refused, Err(AccountError::RealNameUnavailable)));
        assert_eq!(s.real_names.provider_name(), None);
        assert_eq!(
            RealNameStore::real_name(&*s.store, UserId(1))
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn the_store_holds_the_number_only_sealed_and_a_replaced_key_shows_the_status_alone() {
        let s = setup();
        let user = UserId(1);
        s.real_names
            .submit(user, "张三", &number("002"))
            .await
            .unwrap();
        let record = RealNameStore::real_name(&*s.store, user)
            .await
            .unwrap()
            .unwrap();
        let plain = number("002");
        assert!(
            !record
                .sealed
                .windows(plain.len())
                .any(|w| w == plain.as_bytes())
        );
        assert!(!record.number_hash.contains(&plain));
        let rekeyed = RealNames::new(
            s.store.clone(),
            RealNameKey::from_bytes(&[4; 32]),
            Some(Arc::new(SandboxProvider::new())),
            s.clock.clone(),
            Arc::new(IdGen::new(1, s.clock.clone())),
            &RealNameConfig::default(),
        );
        let view = rekeyed.status(user).await.unwrap();
        assert_eq!(view.status, RealNameStatus::Verified);
        assert_eq!(view.legal_name, None);
        assert_eq!(view.id_number_masked, None);
    }
}
