//! Account security: changing the password, the list of one's sessions
//! (devices) and ending one of them, and deleting the account with a grace
//! period in which its owner may restore it; [`Erasure`], the sweep that
//! erases the accounts whose grace period ended.
//!
//! Each operation that needs the password checks it as a log-in does, under
//! the same failed-login throttles (per phone, per client address), so a
//! stolen access token cannot be used to guess the password it would take
//! to change it or delete the account. Every session an operation ends is
//! revoked in the store, forgotten by this process's memory of live
//! sessions, and announced on the bus, so that every gateway closes its
//! WebSockets with 4001, as a log-out does.

use std::sync::Arc;

use superapp_kit::clock::SharedClock;

use super::{Accounts, acquire, admit};
use crate::AccountError;
use crate::model::{Person, SessionInfo, Standing, TokenPair, UserId, UserRecord};
use crate::policy::security as rules;
use crate::ports::Departures;
use crate::social::Social;
use crate::store::AccountStore;
use crate::token::{Claims, random_token, token_hash};

/// Users one name lookup may ask about.
pub const MAX_PEOPLE: usize = 100;

/// Accounts one store read of the sweep hands on.
const SWEEP_BATCH: u32 = 100;

/// A deletion as it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionAsked {
    pub requested_at_ms: i64,
    /// Restorable until then; erased from then on.
    pub due_at_ms: i64,
}

impl Accounts {
    /// Changes the caller's password, `current` proving it is theirs. Every
    /// other session of the user ends at once; the caller's stays, under a
    /// new token pair (answered), and its earlier refresh token answers
    /// invalid from now on, so a copy of it that went elsewhere is dead too.
    #[tracing::instrument(skip_all, fields(user_id = claims.sub.0))]
    pub async fn change_password(
        &self,
        claims: &Claims,
        current: &str,
        new: &str,
        client_address: &str,
    ) -> Result<TokenPair, AccountError> {
        rules::check_new_password(current, new)?;
        let user = self
            .confirm_password(claims, current, client_address)
            .await?;
        let password_hash = self.hash(new).await?;
        let refresh_token = random_token();
        let now = self.clock.now_ms();
        let (session, revoked) = self
            .store
            .change_password(
                user.id,
                password_hash,
                claims.sid,
                token_hash(&refresh_token),
                now,
            )
            .await?;
        self.end_sessions(user.id, &revoked);
        tracing::info!(
            sessions_ended = revoked.len(),
            "password changed; the other sessions ended"
        );
        Ok(self.pair(&session, refresh_token, now))
    }

    /// The caller's live sessions, the most recently active first.
    pub async fn sessions(&self, user: UserId) -> Result<Vec<SessionInfo>, AccountError> {
        Ok(self.store.sessions(user, self.clock.now_ms()).await?)
    }

    /// Ends one of the caller's sessions (the caller's own too); any id that
    /// is not a live session of theirs is `UnknownSession`, whoever's it is.
    #[tracing::instrument(skip_all, fields(user_id = user.0, session_id))]
    pub async fn revoke_session(&self, user: UserId, session_id: u64) -> Result<(), AccountError> {
        let now = self.clock.now_ms();
        if !self
            .store
            .revoke_user_session(user, session_id, now)
            .await?
        {
            return Err(AccountError::UnknownSession);
        }
        self.end_sessions(user, &[session_id]);
        tracing::info!("session revoked by its owner");
        Ok(())
    }

    /// Asks for the caller's account to be deleted, `password` proving it
    /// is theirs. From now on the account is deactivated (every session
    /// ends; nobody may message it, befriend it or add it to a group) and
    /// erased once `account.deletion_grace_secs` have passed, unless its
    /// owner restores it first.
    #[tracing::instrument(skip_all, fields(user_id = claims.sub.0))]
    pub async fn request_deletion(
        &self,
        claims: &Claims,
        password: &str,
        client_address: &str,
    ) -> Result<DeletionAsked, AccountError> {
        let user = self
            .confirm_password(claims, password, client_address)
            .await?;
        let now = self.clock.now_ms();
        let due_at_ms = rules::deletion_due(now, self.deletion_grace_ms);
        let revoked = self.store.request_deletion(user.id, now, due_at_ms).await?;
        self.known.forget(user.id);
        self.end_sessions(user.id, &revoked);
        tracing::info!(due_at_ms, "account deletion asked");
        Ok(DeletionAsked {
            requested_at_ms: now,
            due_at_ms,
        })
    }

    /// Restores an account whose deletion was asked, within its grace
    /// period, and signs its owner in: as a log-in, with the same throttles,
    /// that also withdraws the deletion.
    #[tracing::instrument(skip_all)]
    pub async fn restore(
        &self,
        phone: &str,
        password: &str,
        device_name: &str,
        client_address: &str,
    ) -> Result<TokenPair, AccountError> {
        let user = self.sign_in(phone, password, client_address).await?;
        let now = self.clock.now_ms();
        self.store.cancel_deletion(user.id, now).await?;
        let (session, refresh_token) = self.start_session(user.id, device_name, now).await?;
        tracing::info!(
            user_id = user.id.0,
            session_id = session.id,
            "account restored"
        );
        Ok(self.pair(&session, refresh_token, now))
    }

    /// Whether `user` exists and takes part ([`rules::takes_part`]): what
    /// chat asks before a one-to-one send. Answered from memory for users
    /// found so lately and not deleted since.
    pub async fn takes_part(&self, user: UserId) -> Result<bool, AccountError> {
        let ticket = match self.known.recall(user) {
            Ok(()) => return Ok(true),
            Err(ticket) => ticket,
        };
        let yes = self
            .store
            .standing(user)
            .await?
            .is_some_and(rules::takes_part);
        if yes {
            self.known.remember(user, ticket);
        }
        Ok(yes)
    }

    /// Where `user`'s account stands; None for no such user.
    pub async fn standing(&self, user: UserId) -> Result<Option<Standing>, AccountError> {
        Ok(self.store.standing(user).await?)
    }

    /// Whether `user`'s account is deleted, or being deleted: what makes a
    /// refusal say `user_deleted` rather than that nobody is there.
    pub async fn is_deleted(&self, user: UserId) -> Result<bool, AccountError> {
        Ok(self
            .store
            .standing(user)
            .await?
            .is_some_and(|standing| !rules::takes_part(standing)))
    }

    /// The names of those of `ids` that exist, an erased account's as the
    /// placeholder with `deleted` set; at most [`MAX_PEOPLE`] at once.
    pub async fn people(&self, ids: Vec<UserId>) -> Result<Vec<Person>, AccountError> {
        if ids.len() > MAX_PEOPLE {
            return Err(AccountError::TooManyUsers { max: MAX_PEOPLE });
        }
        Ok(self.store.people(ids).await?)
    }

    /// The caller's account, when `password` is theirs (`WrongPassword`
    /// otherwise), counted as a log-in attempt.
    async fn confirm_password(
        &self,
        claims: &Claims,
        password: &str,
        client_address: &str,
    ) -> Result<UserRecord, AccountError> {
        let owner = self
            .store
            .user(claims.sub)
            .await?
            .ok_or(AccountError::SessionRevoked)?;
        match self.sign_in(&owner.phone, password, client_address).await {
            Ok(user) if user.id == owner.id => Ok(user),
            Ok(_) | Err(AccountError::InvalidCredentials) => Err(AccountError::WrongPassword),
            Err(other) => Err(other),
        }
    }

    /// The argon2id hash of a new password, waiting for a hashing slot as a
    /// log-in does.
    async fn hash(&self, password: &str) -> Result<String, AccountError> {
        let _ticket = admit(&self.login_admission)?;
        let _slot = acquire(&self.hashing).await?;
        let hasher = self.hasher.clone();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| AccountError::Internal(e.to_string()))?
    }
}

/// The sweep that erases the accounts whose grace period has ended: each is
/// first taken out of other rooms (through [`Departures`]: chat takes it
/// out of its groups), then erased in the account store in one write, and
/// its former friends are told their lists changed. Every step may run
/// again (a sweep that stopped halfway finds the account still due, and a
/// second sweep running at once finds nothing to erase), so every node may
/// sweep at once. The binary runs it every `account.deletion_sweep_ms`,
/// off the request path.
pub struct Erasure {
    store: Arc<dyn AccountStore>,
    social: Arc<Social>,
    departures: Arc<dyn Departures>,
    clock: SharedClock,
}

impl Erasure {
    pub fn new(
        store: Arc<dyn AccountStore>,
        social: Arc<Social>,
        departures: Arc<dyn Departures>,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            social,
            departures,
            clock,
        }
    }

    /// Erases every account due now; answers how many. An account another
    /// room could not let go of is left for the next sweep, and the others
    /// go on.
    pub async fn sweep(&self) -> Result<usize, AccountError> {
        let mut erased = 0;
        loop {
            let now = self.clock.now_ms();
            let due = self.store.deletions_due(now, SWEEP_BATCH).await?;
            let mut progress = false;
            for &user in &due {
                if let Err(e) = self.departures.depart(user).await {
                    tracing::warn!(user_id = user.0, error = %e, "account not erased yet: another room failed");
                    continue;
                }
                if let Some(done) = self.store.erase(user, now).await? {
                    self.social.erased(&done.friends);
                    tracing::info!(user_id = user.0, "account erased");
                    erased += 1;
                    progress = true;
                }
            }
            if due.len() < SWEEP_BATCH as usize || !progress {
                return Ok(erased);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use prost::Message as _;
    use superapp_kit::BoxFuture;
    use superapp_kit::bus::{BusMessage, InProcessBus, SharedBus, Subscriber};
    use superapp_kit::clock::ManualClock;
    use superapp_kit::ids::IdGen;
    use superapp_proto::v1::{BusEnvelope, bus_envelope};
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::{AuthConfig, SocialConfig};
    use crate::model::{Befriended, FriendRequest, NewAccount};
    use crate::store::{SocialStore as _, SqliteAccountStore};
    use crate::token::TokenSigner;

    const START_MS: i64 = 1_780_272_000_000;
    const GRACE_MS: i64 = 7 * 24 * 3600 * 1000;
    const PASSWORD: &str = "a long and rare passphrase";
    const NEW_PASSWORD: &str = "another long and rare one";
    const ADDRESS: &str = "192.0.2.1";

    /// Records whom it was asked to take out; refuses while `fail` is set.
    #[derive(Default)]
    struct Rooms {
        departed: Mutex<Vec<UserId>>,
        fail: AtomicBool,
    }

    impl Departures for Rooms {
        fn depart(&self, user: UserId) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async move {
                if self.fail.load(Ordering::SeqCst) {
                    return Err("chat is down".into());
                }
                self.departed.lock().unwrap().push(user);
                Ok(())
            })
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        store: Arc<SqliteAccountStore>,
        clock: Arc<ManualClock>,
        bus: SharedBus,
        accounts: Accounts,
        rooms: Arc<Rooms>,
        erasure: Erasure,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteAccountStore::open(&dir.path().join("account.db"), None).unwrap());
        let clock = Arc::new(ManualClock::new(START_MS));
        let bus: SharedBus = Arc::new(InProcessBus::new());
        let accounts = Accounts::new(
            store.clone(),
            TokenSigner::from_seed(&[7; 32], 900_000),
            bus.clone(),
            clock.clone(),
            Arc::new(IdGen::new(1, clock.clone())),
            AuthConfig::default(),
            crate::contact_salt::ContactSalt::from_bytes([7; 32]),
        )
        .unwrap()
        .with_deletion_grace_ms(GRACE_MS);
        let social = Arc::new(Social::new(
            store.clone(),
            bus.clone(),
            clock.clone(),
            SocialConfig::default(),
        ));
        let rooms = Arc::new(Rooms::default());
        let erasure = Erasure::new(store.clone(), social, rooms.clone(), clock.clone());
        Setup {
            _dir: dir,
            store,
            clock,
            bus,
            accounts,
            rooms,
            erasure,
        }
    }

    impl Setup {
        /// Registers someone, and signs them in on one device.
        async fn user(&self, phone: &str) -> (UserId, TokenPair) {
            let new = NewAccount {
                phone: phone.into(),
                password: PASSWORD.into(),
                display_name: "Ann".into(),
            };
            let profile = self.accounts.register(new, ADDRESS).await.unwrap();
            (
                profile.user_id,
                self.sign_in(phone, PASSWORD).await.unwrap(),
            )
        }

        async fn sign_in(&self, phone: &str, password: &str) -> Result<TokenPair, AccountError> {
            self.accounts.login(phone, password, "phone", ADDRESS).await
        }

        async fn claims(&self, pair: &TokenPair) -> Result<Claims, AccountError> {
            self.accounts.authenticate(&pair.access_token).await
        }

        /// The bus topic of `user`'s devices, heard while the subscriber lives.
        fn listen(&self, user: UserId) -> (Arc<dyn Subscriber>, mpsc::Receiver<BusMessage>) {
            let (subscriber, messages) = self.bus.subscriber(64);
            subscriber.subscribe(&format!("u.{}", user.0));
            (subscriber, messages)
        }
    }

    /// The sessions whose revocation was announced so far.
    fn revocations(messages: &mut mpsc::Receiver<BusMessage>) -> Vec<u64> {
        let mut revoked = Vec::new();
        while let Ok(BusMessage::Message { payload, .. }) = messages.try_recv() {
            let envelope = BusEnvelope::decode(payload).unwrap();
            if let Some(bus_envelope::Kind::SessionRevoked(r)) = envelope.kind {
                revoked.push(r.session_id);
            }
        }
        revoked
    }

    #[tokio::test]
    async fn a_password_change_ends_every_other_session_and_keeps_the_asking_one() {
        let s = setup();
        let (ann, here) = s.user("+8613800000001").await;
        let there = s.sign_in("+8613800000001", PASSWORD).await.unwrap();
        let (_listening, mut announced) = s.listen(ann);
        let claims = s.claims(&here).await.unwrap();

        let renewed = s
            .accounts
            .change_password(&claims, PASSWORD, NEW_PASSWORD, ADDRESS)
            .await
            .unwrap();
        assert_eq!(renewed.session_id, here.session_id);
        assert_eq!(revocations(&mut announced), [there.session_id]);
        assert!(matches!(
            s.claims(&there).await,
            Err(AccountError::SessionRevoked)
        ));
        // The asking session lives on, its earlier refresh token dead.
        assert!(s.claims(&here).await.is_ok());
        assert!(matches!(
            s.accounts.refresh(&here.refresh_token).await,
            Err(AccountError::InvalidRefreshToken)
        ));
        assert!(s.accounts.refresh(&renewed.refresh_token).await.is_ok());
        assert!(matches!(
            s.sign_in("+8613800000001", PASSWORD).await,
            Err(AccountError::InvalidCredentials)
        ));
        assert!(s.sign_in("+8613800000001", NEW_PASSWORD).await.is_ok());
    }

    #[tokio::test]
    async fn a_wrong_current_password_counts_as_a_failed_log_in_and_changes_nothing() {
        let s = setup();
        let (ann, here) = s.user("+8613800000001").await;
        let there = s.sign_in("+8613800000001", PASSWORD).await.unwrap();
        let claims = s.claims(&here).await.unwrap();
        let change = |current: &'static str, new: &'static str| {
            let accounts = &s.accounts;
            async move {
                accounts
                    .change_password(&claims, current, new, ADDRESS)
                    .await
            }
        };
        // Refused for the new password's sake before anything is counted.
        assert!(matches!(
            change(PASSWORD, "short").await,
            Err(AccountError::PasswordTooShort)
        ));
        assert!(matches!(
            change(PASSWORD, PASSWORD).await,
            Err(AccountError::PasswordUnchanged)
        ));
        for _ in 0..AuthConfig::default().login_failures_per_account {
            assert!(matches!(
                change("not my password", NEW_PASSWORD).await,
                Err(AccountError::WrongPassword)
            ));
        }
        assert!(matches!(
            change(PASSWORD, NEW_PASSWORD).await,
            Err(AccountError::TooManyAttempts { .. })
        ));
        assert!(matches!(
            s.sign_in("+8613800000001", PASSWORD).await,
            Err(AccountError::TooManyAttempts { .. })
        ));
        assert!(s.claims(&there).await.is_ok());
        let stored = s.store.user(ann).await.unwrap().unwrap();
        assert!(s.accounts.hasher.verify(PASSWORD, &stored.password_hash));
    }

    #[tokio::test]
    async fn a_user_lists_their_sessions_and_ends_one_but_never_another_user_s() {
        let s = setup();
        let (ann, here) = s.user("+8613800000001").await;
        s.clock.advance_ms(1_000);
        let there = s.sign_in("+8613800000001", PASSWORD).await.unwrap();
        let (_, bo) = s.user("+8613800000002").await;
        let listed: Vec<u64> = (s.accounts.sessions(ann).await.unwrap().iter())
            .map(|session| session.id)
            .collect();
        assert_eq!(listed, [there.session_id, here.session_id]);

        let (_listening, mut announced) = s.listen(ann);
        assert!(matches!(
            s.accounts.revoke_session(ann, bo.session_id).await,
            Err(AccountError::UnknownSession)
        ));
        assert!(s.claims(&bo).await.is_ok());
        s.accounts
            .revoke_session(ann, there.session_id)
            .await
            .unwrap();
        assert_eq!(revocations(&mut announced), [there.session_id]);
        assert!(matches!(
            s.claims(&there).await,
            Err(AccountError::SessionRevoked)
        ));
        assert!(matches!(
            s.accounts.revoke_session(ann, there.session_id).await,
            Err(AccountError::UnknownSession)
        ));
        assert_eq!(s.accounts.sessions(ann).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_account_being_deleted_signs_in_only_to_be_restored_within_its_grace() {
        let s = setup();
        let phone = "+8613800000001";
        let (ann, here) = s.user(phone).await;
        assert!(s.accounts.takes_part(ann).await.unwrap());
        let claims = s.claims(&here).await.unwrap();
        assert!(matches!(
            s.accounts.request_deletion(&claims, "wrong", ADDRESS).await,
            Err(AccountError::WrongPassword)
        ));
        let (_listening, mut announced) = s.listen(ann);
        let asked = s
            .accounts
            .request_deletion(&claims, PASSWORD, ADDRESS)
            .await
            .unwrap();
        assert_eq!(asked.due_at_ms, START_MS + GRACE_MS);
        assert_eq!(revocations(&mut announced), [here.session_id]);
        assert!(matches!(
            s.claims(&here).await,
            Err(AccountError::SessionRevoked)
        ));
        assert!(!s.accounts.takes_part(ann).await.unwrap());
        assert!(s.accounts.is_deleted(ann).await.unwrap());
        match s.sign_in(phone, PASSWORD).await {
            Err(AccountError::DeletionPending { due_at_ms }) => {
                assert_eq!(due_at_ms, asked.due_at_ms);
            }
            other => panic!("expected a pending deletion, got {other:?}"),
        }
        // A wrong password learns nothing of it.
        assert!(matches!(
            s.sign_in(phone, "wrong").await,
            Err(AccountError::InvalidCredentials)
        ));

        s.clock.advance_ms(GRACE_MS - 1);
        let restored = s
            .accounts
            .restore(phone, PASSWORD, "tablet", ADDRESS)
            .await
            .unwrap();
        assert!(s.claims(&restored).await.is_ok());
        assert!(s.accounts.takes_part(ann).await.unwrap());
        assert!(s.sign_in(phone, PASSWORD).await.is_ok());
        assert!(matches!(
            s.accounts.restore(phone, PASSWORD, "", ADDRESS).await,
            Err(AccountError::DeletionNotRequested)
        ));
        s.clock.advance_ms(1);
        assert_eq!(s.erasure.sweep().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_sweep_erases_an_account_after_its_grace_and_frees_its_phone() {
        let s = setup();
        let phone = "+8613800000001";
        let (ann, here) = s.user(phone).await;
        let (bo, _) = s.user("+8613800000002").await;
        let request = FriendRequest {
            from: ann,
            to: bo,
            greeting: String::new(),
            sent_ms: START_MS,
        };
        let limits = SocialConfig::default().limits();
        s.store.send_request(request, limits).await.unwrap();
        let befriended = s.store.accept(bo, ann, START_MS, limits).await.unwrap();
        assert!(matches!(befriended, Befriended::Friends { .. }));
        let claims = s.claims(&here).await.unwrap();
        s.accounts
            .request_deletion(&claims, PASSWORD, ADDRESS)
            .await
            .unwrap();
        let (_listening, mut told) = s.listen(bo);

        s.clock.advance_ms(GRACE_MS - 1);
        assert_eq!(s.erasure.sweep().await.unwrap(), 0);
        assert!(s.rooms.departed.lock().unwrap().is_empty());
        s.clock.advance_ms(1);
        assert!(matches!(
            s.accounts.restore(phone, PASSWORD, "", ADDRESS).await,
            Err(AccountError::AccountDeleted)
        ));
        // Chat could not let go: the account waits for the next sweep.
        s.rooms.fail.store(true, Ordering::SeqCst);
        assert_eq!(s.erasure.sweep().await.unwrap(), 0);
        s.rooms.fail.store(false, Ordering::SeqCst);
        assert_eq!(s.erasure.sweep().await.unwrap(), 1);
        assert_eq!(*s.rooms.departed.lock().unwrap(), [ann]);
        assert!(matches!(told.try_recv(), Ok(BusMessage::Message { .. })));
        assert!(!s.store.relation(bo, ann, START_MS).await.unwrap().friends);
        assert_eq!(s.erasure.sweep().await.unwrap(), 0);

        let people = s.accounts.people(vec![ann, bo]).await.unwrap();
        assert_eq!(
            people
                .iter()
                .map(|p| (p.display_name.as_str(), p.deleted))
                .collect::<Vec<_>>(),
            [(rules::DELETED_DISPLAY_NAME, true), ("Ann", false)]
        );
        assert!(matches!(
            s.sign_in(phone, PASSWORD).await,
            Err(AccountError::InvalidCredentials)
        ));
        let (again, _) = s.user(phone).await;
        assert_ne!(again, ann);
        assert!(matches!(
            s.accounts.people(vec![ann; MAX_PEOPLE + 1]).await,
            Err(AccountError::TooManyUsers { max: MAX_PEOPLE })
        ));
    }
}
