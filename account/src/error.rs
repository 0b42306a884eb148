//! The outcomes of account operations that callers branch on.

use superapp_kit::store::StoreError;

use crate::policy::real_name::IdNumberError;
use crate::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("phone numbers are in E.164 form, e.g. +8613800138000")]
    InvalidPhone,
    #[error("display names are 1 to 64 characters without control characters")]
    InvalidDisplayName,
    #[error("passwords are at least 8 characters")]
    PasswordTooShort,
    #[error("passwords are at most 128 characters")]
    PasswordTooLong,
    #[error("this password is among the most common ones; choose another")]
    PasswordTooCommon,
    #[error("this phone number is already registered")]
    PhoneTaken,
    /// The same for an unknown phone and a wrong password.
    #[error("wrong phone number or password")]
    InvalidCredentials,
    #[error("too many failed attempts; try again later")]
    TooManyAttempts { retry_after_ms: u64 },
    #[error("too many registrations from this address; try again later")]
    TooManyRegistrations { retry_after_ms: u64 },
    /// Refused before any work: the queue for password hashing is full.
    #[error("the server is busy; try again shortly")]
    Busy { retry_after_ms: u64 },
    #[error("the refresh token is not valid")]
    InvalidRefreshToken,
    #[error("the access token is not valid")]
    InvalidToken,
    #[error("the access token has expired")]
    TokenExpired,
    #[error("the session has ended")]
    SessionRevoked,
    #[error("the ticket is not valid or was already used")]
    InvalidTicket,
    #[error("the ID number is not a valid resident identity number: {0}")]
    InvalidIdNumber(IdNumberError),
    #[error(
        "a legal name is 2 to 64 letters, its parts joined by middle dots (·), without digits, spaces or control characters"
    )]
    InvalidLegalName,
    #[error("real-name verification is complete and cannot be changed")]
    AlreadyVerified,
    #[error("a real-name submission is waiting for its decision")]
    VerificationPending,
    #[error("this ID number verifies another account")]
    IdNumberTaken,
    #[error("too many real-name submissions; try again later")]
    TooManySubmissions { retry_after_ms: u64 },
    #[error("real-name verification is not offered by this server")]
    RealNameUnavailable,
    /// The caller's own password, asked again before a change that needs
    /// it, does not match.
    #[error("the password is wrong")]
    WrongPassword,
    #[error("the new password is the current one")]
    PasswordUnchanged,
    /// Not a live session of the caller: unknown, another user's, ended or
    /// expired, answered alike.
    #[error("no such session")]
    UnknownSession,
    /// The account is deactivated until `due_at_ms`, when it is erased;
    /// until then its owner may restore it.
    #[error(
        "this account is being deleted; it can be restored (POST /v1/accounts/restore) until {due_at_ms} ms since the epoch"
    )]
    DeletionPending { due_at_ms: i64 },
    #[error("this account has been deleted")]
    AccountDeleted,
    #[error("this account's deletion was not asked for")]
    DeletionNotRequested,
    #[error("at most {max} users at once")]
    TooManyUsers { max: usize },
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<IdNumberError> for AccountError {
    fn from(e: IdNumberError) -> Self {
        AccountError::InvalidIdNumber(e)
    }
}

impl From<TokenError> for AccountError {
    /// A token of the retired format answers as expired, so clients refresh
    /// (refresh tokens are opaque secrets in the store, untouched by the
    /// change of format) instead of logging in again.
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired | TokenError::Retired => AccountError::TokenExpired,
            TokenError::Malformed | TokenError::BadSignature | TokenError::OutOfBounds => {
                AccountError::InvalidToken
            }
        }
    }
}

/// The outcomes of social-graph operations that callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum SocialError {
    #[error("one cannot befriend oneself")]
    CannotBefriendSelf,
    #[error("no such user")]
    UnknownUser,
    #[error("you are friends already")]
    AlreadyFriends,
    #[error("no such friend request, or it expired")]
    UnknownRequest,
    #[error("this user is not your friend")]
    NotFriends,
    #[error("you block this user; unblock them first")]
    BlockedByYou,
    #[error("at most {max} friends")]
    TooManyFriends { max: u32 },
    #[error("too many friend requests today; try again later")]
    TooManyRequests { retry_after_ms: u64 },
    /// The other's account is deleted, or being deleted.
    #[error("this user's account is deleted")]
    UserDeleted,
    #[error("{reason}")]
    Invalid {
        code: &'static str,
        reason: &'static str,
    },
    #[error("storage failed")]
    Store(#[from] StoreError),
}

/// The outcomes of profile operations (one's own profile, lookups, contact
/// matching) that callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// No such user, or none the caller may find: the two answer alike.
    #[error("no such user")]
    UnknownUser,
    /// The account is deleted, or being deleted: shown to nobody.
    #[error("this user's account is deleted")]
    UserDeleted,
    #[error("phone numbers are in E.164 form, e.g. +8613800138000")]
    InvalidPhone,
    #[error(
        "a handle is 6 to 20 characters: letters, digits, _ and -, the first a letter (a to z)"
    )]
    InvalidHandle,
    #[error("this handle is taken")]
    HandleTaken,
    #[error("a handle may be changed once in 30 days; try again later")]
    HandleTooSoon { retry_after_ms: u64 },
    #[error("too many lookups by handle or phone; try again later")]
    TooManyLookups { retry_after_ms: u64 },
    #[error("too many new contacts matched in the last 24 hours; try again later")]
    TooManyMatches { retry_after_ms: u64 },
    /// An avatar `media:<id>` that is not a picture the user may use (they
    /// neither uploaded it nor were shown it, or it is no image), or no
    /// media room is wired.
    #[error("the avatar is not a picture you uploaded")]
    AvatarRefused,
    #[error("{reason}")]
    Invalid {
        code: &'static str,
        reason: &'static str,
    },
    #[error("storage failed")]
    Store(#[from] StoreError),
}

/// The outcomes of people nearby's operations that callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum NearbyError {
    #[error("latitude is a number from -90 to 90")]
    InvalidLatitude,
    #[error("longitude is a number from -180 to 180")]
    InvalidLongitude,
    #[error("people nearby covers latitudes from -85 to 85")]
    NotCovered,
    #[error("a search radius is at most {max} metres")]
    InvalidRadius { max: u32 },
    #[error("share your location first: a search is centred on it")]
    NotShared,
    #[error("your location changed too often; try again later")]
    TooManyMoves { retry_after_ms: u64 },
    #[error("too many searches for people nearby; try again later")]
    TooManyQueries { retry_after_ms: u64 },
    /// The index of shared positions failed (Redis, in the medium tier).
    #[error("people nearby is unavailable")]
    Index(StoreError),
    /// The account room's store failed (the block or name read).
    #[error("storage failed")]
    Store(#[from] StoreError),
}
