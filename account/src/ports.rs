//! What the account room needs from outside: a verification provider, the
//! service that checks a legal name and an ID number against the national
//! registry. The binary wires one in: [`crate::sandbox::SandboxProvider`]
//! is the one shipped. And [`Departures`]: what other rooms do with a user
//! whose account is erased.

use std::fmt;

use superapp_kit::BoxFuture;

use crate::model::{Rejection, UserId};
use crate::policy::real_name::{mask_id_number, mask_legal_name};

/// A verification provider. Real ones answer most requests within seconds
/// and some only later (a manual review, a registry that is slow to
/// answer): [`ProviderAnswer::Pending`] now, the decision to a later
/// [`VerificationProvider::check`] of the same attempt.
///
/// The attempt id is the idempotency key: submitting an attempt again
/// (after a timeout, or after a restart forgot whether it went out) must
/// not start a second verification, and may answer the first's state.
pub trait VerificationProvider: Send + Sync + 'static {
    /// A short name for logs and the configuration ("sandbox").
    fn name(&self) -> &'static str;

    /// Asks for a verification of `request`.
    fn submit(
        &self,
        request: VerificationRequest,
    ) -> BoxFuture<'_, Result<ProviderAnswer, ProviderError>>;

    /// Where attempt `attempt_id` stands: [`ProviderAnswer::Unknown`] when
    /// the provider never received it.
    fn check(&self, attempt_id: u64) -> BoxFuture<'_, Result<ProviderAnswer, ProviderError>>;
}

/// What a provider is asked: the legal name and the ID number as the user
/// gave them (normalised by the policy). `Debug` shows both masked.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationRequest {
    pub attempt_id: u64,
    pub legal_name: String,
    pub id_number: String,
}

impl fmt::Debug for VerificationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationRequest")
            .field("attempt_id", &self.attempt_id)
            .field("legal_name", &mask_legal_name(&self.legal_name))
            .field("id_number", &mask_id_number(&self.id_number))
            .finish()
    }
}

/// A provider's answer about one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderAnswer {
    Verified,
    Rejected(Rejection),
    /// Received, not decided yet: ask again later.
    Pending,
    /// Never received (only [`VerificationProvider::check`] answers this):
    /// submit it again.
    Unknown,
}

/// The provider could not be asked, or did not answer as it should. The
/// attempt stays pending and is asked about again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the verification provider is unavailable: {0}")]
    Unavailable(String),
}

/// What the account room asks of the other rooms before it erases an
/// account ([`crate::service::Erasure`]): the binary wires in the chat
/// room, which takes the user out of every group (handing on the groups
/// they own). Messages already sent stay in their peers' history.
pub trait Departures: Send + Sync + 'static {
    /// Takes `user` out of what other rooms hold them in. Asked again for
    /// a user already gone, it does nothing: an erasure that stopped
    /// halfway is done again from the start.
    fn depart(&self, user: UserId) -> BoxFuture<'_, Result<(), String>>;
}

/// What profiles need of the media room (the binary wires it): whether an
/// uploaded picture may be an avatar, and which one each profile references
/// (so the media room keeps it).
pub trait AvatarMedia: Send + Sync + 'static {
    /// Whether `user` may use media `id` (they uploaded it, or were shown
    /// it) and it is an image.
    fn usable_image(&self, user: UserId, id: String) -> BoxFuture<'_, Result<bool, String>>;
    /// `user`'s profile now references media `id`, or none: what it
    /// referenced before is no longer kept for it.
    fn reference(&self, user: UserId, id: Option<String>) -> BoxFuture<'_, Result<(), String>>;
}
