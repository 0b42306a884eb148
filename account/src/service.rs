//! The account operations the edge calls: [`Accounts`] (registration,
//! sessions, tokens; in [`security`], password changes, the session list and
//! an account's deletion); in [`real_name`], [`RealNames`] (real-name
//! verification); in [`profiles`], [`Profiles`] (profiles, lookups and
//! contact matching). [`Erasure`] erases the accounts whose grace period
//! ended.

pub mod profiles;
pub mod real_name;
pub mod security;

pub use profiles::Profiles;
pub use real_name::RealNames;
pub use security::Erasure;

use std::sync::Arc;

use crate::token::{Claims, TokenSigner, random_token, token_hash};
use bytes::Bytes;
use prost::Message as _;
use superapp_kit::bus::SharedBus;
use superapp_kit::clock::SharedClock;
use superapp_kit::ids::IdGen;
use superapp_proto::Topic;
use superapp_proto::v1::{BusEnvelope, SessionRevoked, bus_envelope};

use crate::AccountError;
use crate::config::AuthConfig;
use crate::contact_salt::ContactSalt;
use crate::live::{KnownUsers, LiveSessions, Recall};
use crate::model::{
    NewAccount, Profile, Rotation, SessionRecord, Standing, TokenPair, UserId, UserRecord,
};
use crate::password::Hasher;
use crate::policy;
use crate::store::AccountStore;
use crate::throttle::Throttle;
use crate::tickets::Tickets;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Concurrent password hashes at most.
pub(crate) const HASHING_SLOTS: usize = 4;

/// Of the hashing slots, registrations hold at most this many at once, so a
/// flood of registrations leaves the rest to log-ins.
pub const REGISTRATION_SLOTS: usize = HASHING_SLOTS / 2;

/// What a `busy` answer asks the client to wait: a queue of hashes drains in
/// well under a second.
const BUSY_RETRY_MS: u64 = 1_000;

pub struct Accounts {
    store: Arc<dyn AccountStore>,
    signer: TokenSigner,
    hasher: Hasher,
    bus: SharedBus,
    clock: SharedClock,
    ids: Arc<IdGen>,
    config: AuthConfig,
    by_account: Throttle,
    by_address: Throttle,
    /// Registrations per client address, counted before hashing.
    registrations: Throttle,
    /// Caps concurrent argon2id work (19 MiB each), so a flood queues instead
    /// of exhausting memory.
    hashing: Semaphore,
    /// The share of `hashing` registrations may hold ([`REGISTRATION_SLOTS`]):
    /// a registration takes one of these before a hashing slot, so log-ins
    /// never wait behind more than that many registrations.
    registering: Semaphore,
    /// Tickets for log-ins hashing or waiting to (`HASHING_SLOTS` +
    /// `auth.login_queue`): one more is `busy` at once, so the queue, and
    /// how long a log-in in it waits, stays bounded.
    login_admission: Semaphore,
    /// The same for registrations (`REGISTRATION_SLOTS` + `auth.registration_queue`).
    registration_admission: Semaphore,
    /// Browser tickets by hash: single use, in memory.
    tickets: Tickets,
    /// Sessions found live lately, forgotten at their revocation: the check
    /// every WebSocket request makes ([`Accounts::session_in_use`]).
    live: LiveSessions,
    /// Users found to take part lately, forgotten at their deletion: the
    /// check of every one-to-one send ([`Accounts::takes_part`]).
    known: KnownUsers,
    /// How long an account whose deletion was asked stays restorable.
    deletion_grace_ms: i64,
    /// Hashes each new user's number for contact matching.
    contact_salt: ContactSalt,
}

impl Accounts {
    pub fn new(
        store: Arc<dyn AccountStore>,
        signer: TokenSigner,
        bus: SharedBus,
        clock: SharedClock,
        ids: Arc<IdGen>,
        config: AuthConfig,
        contact_salt: ContactSalt,
    ) -> Result<Self, AccountError> {
        let window_ms = (config.login_window_secs * 1000) as i64;
        let registration_window_ms = (config.registration_window_secs * 1000) as i64;
        Ok(Self {
            hasher: Hasher::new(config.argon2_memory_kib, config.argon2_iterations)?,
            by_account: Throttle::new(config.login_failures_per_account, window_ms),
            by_address: Throttle::new(config.login_failures_per_address, window_ms),
            registrations: Throttle::new(config.registrations_per_address, registration_window_ms),
            hashing: Semaphore::new(HASHING_SLOTS),
            registering: Semaphore::new(REGISTRATION_SLOTS),
            login_admission: Semaphore::new(HASHING_SLOTS + config.login_queue),
            registration_admission: Semaphore::new(REGISTRATION_SLOTS + config.registration_queue),
            store,
            signer,
            bus,
            clock,
            ids,
            config,
            tickets: Tickets::default(),
            live: LiveSessions::default(),
            known: KnownUsers::default(),
            deletion_grace_ms: crate::config::AccountConfig::default().deletion_grace_ms(),
            contact_salt,
        })
    }

    /// The grace period of a deletion (`account.deletion_grace_secs`).
    pub fn with_deletion_grace_ms(mut self, grace_ms: i64) -> Self {
        self.deletion_grace_ms = grace_ms;
        self
    }

    /// Registers from `client_address` (the key of [`Throttle`]s by address).
    /// Refusals cost no hashing: input first, then the queue's bound, then the
    /// address's throttle, which counts this attempt before it waits.
    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        new: NewAccount,
        client_address: &str,
    ) -> Result<Profile, AccountError> {
        let phone = policy::normalize_phone(&new.phone)?;
        let display_name = policy::normalize_display_name(&new.display_name)?;
        policy::check_rules(&new.password)?;
        let _ticket = admit(&self.registration_admission)?;
        let now = self.clock.now_ms();
        if let Some(wait) = self.registrations.check_and_record(client_address, now) {
            return Err(AccountError::TooManyRegistrations {
                retry_after_ms: wait,
            });
        }
        let _share = acquire(&self.registering).await?;
        let _slot = acquire(&self.hashing).await?;
        let hasher = self.hasher.clone();
        let password = new.password;
        let password_hash = tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| AccountError::Internal(e.to_string()))??;
        let user = UserRecord {
            id: UserId(self.ids.next()),
            phone,
            display_name,
            password_hash,
            created_at_ms: self.clock.now_ms(),
        };
        let phone_hash = self.contact_salt.hash(&user.phone);
        if !self.store.create_user(user.clone(), phone_hash).await? {
            return Err(AccountError::PhoneTaken);
        }
        tracing::info!(user_id = user.id.0, "registered");
        Ok(user.into())
    }

    /// Unknown phones and wrong passwords answer alike and take alike long.
    /// An account being deleted answers, once the password is right, when
    /// it will be erased: its owner may restore it ([`Accounts::restore`]).
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        phone: &str,
        password: &str,
        device_name: &str,
        client_address: &str,
    ) -> Result<TokenPair, AccountError> {
        let user = self.sign_in(phone, password, client_address).await?;
        let standing = self.store.standing(user.id).await?;
        let now = self.clock.now_ms();
        policy::security::may_sign_in(standing.unwrap_or(Standing::Active), now)?;
        let (session, refresh_token) = self.start_session(user.id, device_name, now).await?;
        tracing::info!(user_id = user.id.0, session_id = session.id, "logged in");
        Ok(self.pair(&session, refresh_token, now))
    }

    /// The account of `phone` when `password` is its own, counted by the
    /// failed-login throttles of the phone and of `client_address`.
    async fn sign_in(
        &self,
        phone: &str,
        password: &str,
        client_address: &str,
    ) -> Result<UserRecord, AccountError> {
        let phone = policy::normalize_phone(phone).map_err(|_| AccountError::InvalidCredentials)?;
        let _ticket = admit(&self.login_admission)?;
        let now = self.clock.now_ms();
        // Refused attempts are turned away before they wait for a hashing slot.
        // The attempt counts as failed, for its address and its phone, until
        // it succeeds, so concurrent guesses cannot all pass the checks.
        let throttled = match self.by_address.check_and_record(client_address, now) {
            Some(wait) => Some(wait),
            None => self.by_account.check_and_record(&phone, now).inspect(|_| {
                // Not hashed, so not a failure of this address.
                self.by_address.give_back(client_address);
            }),
        };
        if let Some(wait) = throttled {
            return Err(AccountError::TooManyAttempts {
                retry_after_ms: wait,
            });
        }
        let _slot = acquire(&self.hashing).await?;
        let user = self.store.user_by_phone(&phone).await?;
        let hasher = self.hasher.clone();
        let phc = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| hasher.decoy().to_string());
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || hasher.verify(&password, &phc))
            .await
            .map_err(|e| AccountError::Internal(e.to_string()))?;
        let Some(user) = user.filter(|_| matches) else {
            return Err(AccountError::InvalidCredentials);
        };
        self.by_account.clear(&phone);
        self.by_address.give_back(client_address);
        Ok(user)
    }

    /// A new session of `user` on `device_name`, and its first refresh token.
    async fn start_session(
        &self,
        user: UserId,
        device_name: &str,
        now: i64,
    ) -> Result<(SessionRecord, String), AccountError> {
        let refresh_token = random_token();
        let session = SessionRecord {
            id: self.ids.next(),
            user_id: user,
            device_name: policy::device_name(device_name),
            created_at_ms: now,
            expires_at_ms: now + (self.config.refresh_ttl_secs * 1000) as i64,
        };
        self.store
            .create_session(session.clone(), token_hash(&refresh_token))
            .await?;
        Ok((session, refresh_token))
    }

    /// Rotates the refresh token. A spent token presented again revokes its
    /// whole session: whoever holds the newer token is logged out too.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, AccountError> {
        let now = self.clock.now_ms();
        let new_token = random_token();
        let rotation = self
            .store
            .rotate_refresh(token_hash(refresh_token), token_hash(&new_token), now)
            .await?;
        match rotation {
            Rotation::Rotated(session) => Ok(self.pair(&session, new_token, now)),
            Rotation::Reused {
                session_id,
                user_id,
            } => {
                tracing::warn!(session_id, "spent refresh token reused; session revoked");
                self.end_sessions(user_id, &[session_id]);
                Err(AccountError::InvalidRefreshToken)
            }
            Rotation::Invalid => Err(AccountError::InvalidRefreshToken),
        }
    }

    pub async fn logout(&self, claims: &Claims) -> Result<(), AccountError> {
        // Already ended (by another device, or expired): logging out again
        // changes nothing and is answered the same.
        self.store
            .revoke_user_session(claims.sub, claims.sid, self.clock.now_ms())
            .await?;
        self.end_sessions(claims.sub, &[claims.sid]);
        tracing::info!(
            user_id = claims.sub.0,
            session_id = claims.sid,
            "logged out"
        );
        Ok(())
    }

    /// Checks signature, expiry and that the session is still live.
    pub async fn authenticate(&self, access_token: &str) -> Result<Claims, AccountError> {
        let now = self.clock.now_ms();
        let claims = self.signer.verify(access_token, now)?;
        match self.store.active_session(claims.sid, now).await? {
            Some(user) if user == claims.sub => Ok(claims),
            _ => Err(AccountError::SessionRevoked),
        }
    }

    /// Whether the session behind these claims is still live.
    pub async fn session_live(&self, claims: &Claims) -> Result<bool, AccountError> {
        let user = self
            .store
            .active_session(claims.sid, self.clock.now_ms())
            .await?;
        Ok(user == Some(claims.sub))
    }

    /// Whether `session_id` is a live session of `user`, for a request made
    /// over one of its WebSockets. Answered from memory when the session was
    /// found live lately and not revoked since (`crate::live`), else from
    /// the store: the revocation announced on the bus may never reach the
    /// socket's gateway, and this check still refuses the session's requests.
    pub async fn session_in_use(
        &self,
        user: UserId,
        session_id: u64,
    ) -> Result<bool, AccountError> {
        let now = self.clock.now_ms();
        let ticket = match self.live.recall(session_id, now) {
            Recall::Live(known) => return Ok(known == user),
            Recall::Unknown(ticket) => ticket,
        };
        let live = self.store.active_session(session_id, now).await? == Some(user);
        if live {
            self.live.remember(session_id, user, ticket);
        }
        Ok(live)
    }

    pub async fn profile(&self, user_id: UserId) -> Result<Profile, AccountError> {
        self.store
            .user(user_id)
            .await?
            .map(Profile::from)
            .ok_or(AccountError::InvalidToken)
    }

    /// Display names of those of `ids` that exist.
    pub async fn display_names(
        &self,
        ids: Vec<UserId>,
    ) -> Result<Vec<(UserId, String)>, AccountError> {
        Ok(self.store.display_names(ids).await?)
    }

    /// Whether the user was ever registered (deleted accounts included).
    pub async fn user_exists(&self, user_id: UserId) -> Result<bool, AccountError> {
        Ok(self.store.standing(user_id).await?.is_some())
    }

    /// A single-use ticket for a browser's WebSocket handshake, where headers
    /// cannot be set. Returns the ticket and its expiry.
    pub fn issue_ticket(&self, claims: Claims) -> (String, i64) {
        let now = self.clock.now_ms();
        let expires = now + (self.config.ticket_ttl_secs * 1000) as i64;
        let ticket = random_token();
        self.tickets
            .issue(token_hash(&ticket), claims, expires, now);
        (ticket, expires)
    }

    pub async fn redeem_ticket(&self, ticket: &str) -> Result<Claims, AccountError> {
        let now = self.clock.now_ms();
        let claims = self
            .tickets
            .redeem(&token_hash(ticket), now)
            .ok_or(AccountError::InvalidTicket)?;
        match self.store.active_session(claims.sid, now).await? {
            Some(_) => Ok(claims),
            None => Err(AccountError::SessionRevoked),
        }
    }

    fn pair(&self, session: &SessionRecord, refresh_token: String, now: i64) -> TokenPair {
        let access_expires_at_ms = now + (self.config.access_ttl_secs * 1000) as i64;
        let claims = Claims {
            sub: session.user_id,
            sid: session.id,
            iat: now,
            exp: access_expires_at_ms,
        };
        TokenPair {
            user_id: session.user_id,
            session_id: session.id,
            access_token: self.signer.sign(&claims),
            access_expires_at_ms,
            refresh_token,
            refresh_expires_at_ms: session.expires_at_ms,
        }
    }

    /// Sessions the store has revoked: forgotten here, and announced, so
    /// that their WebSockets close on every gateway.
    fn end_sessions(&self, user: UserId, sessions: &[u64]) {
        for &session in sessions {
            self.live.forget(session);
            self.announce_revocation(user, session);
        }
    }

    fn announce_revocation(&self, user_id: UserId, session_id: u64) {
        let envelope = BusEnvelope {
            target: 0,
            kind: Some(bus_envelope::Kind::SessionRevoked(SessionRevoked {
                session_id,
            })),
            origin: 0,
        };
        self.bus.publish(
            &Topic::User(user_id).to_string(),
            Bytes::from(envelope.encode_to_vec()),
        );
    }
}

/// A ticket of `admission`, or `busy` at once when none is left.
fn admit(admission: &Semaphore) -> Result<SemaphorePermit<'_>, AccountError> {
    admission.try_acquire().map_err(|_| AccountError::Busy {
        retry_after_ms: BUSY_RETRY_MS,
    })
}

async fn acquire(semaphore: &Semaphore) -> Result<SemaphorePermit<'_>, AccountError> {
    semaphore
        .acquire()
        .await
        .map_err(|e| AccountError::Internal(e.to_string()))
}
