//! Real-name verification's types: the stored record of a user's latest
//! submission, its state, and what the user is shown. No I/O.

use std::fmt;

use super::UserId;

/// Where a user stands, as the user and other rooms see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RealNameStatus {
    /// Never submitted.
    Unverified,
    /// Submitted; the provider has not decided yet.
    Pending,
    Verified,
    /// The provider refused the latest submission; the user may submit again.
    Rejected,
}

impl RealNameStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unverified => "unverified",
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::Rejected => "rejected",
        }
    }
}

/// Why a submission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The provider's registry holds no person of this name and number.
    Mismatch,
    /// The provider did not decide within [`crate::policy::real_name::PENDING_LIMIT_MS`].
    Expired,
}

impl Rejection {
    /// The stable snake_case name, as stored and as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mismatch => "mismatch",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mismatch" => Some(Self::Mismatch),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// The state of a stored submission (a user with no record is unverified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RealNameState {
    Pending,
    Verified,
    Rejected(Rejection),
}

impl RealNameState {
    pub fn status(self) -> RealNameStatus {
        match self {
            Self::Pending => RealNameStatus::Pending,
            Self::Verified => RealNameStatus::Verified,
            Self::Rejected(_) => RealNameStatus::Rejected,
        }
    }
}

/// A provider's decision on a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Verified,
    Rejected(Rejection),
}

impl From<Decision> for RealNameState {
    fn from(d: Decision) -> Self {
        match d {
            Decision::Verified => Self::Verified,
            Decision::Rejected(r) => Self::Rejected(r),
        }
    }
}

/// A user's latest submission, as stored: one per user, replaced by a new
/// submission after a rejection. The ID number and the legal name are only
/// in `sealed` (see [`crate::seal`]); `number_hash` is a keyed hash of the
/// number, which lets the store hold one account per number without
/// holding the number.
#[derive(Clone, PartialEq, Eq)]
pub struct RealNameRecord {
    pub user_id: UserId,
    /// The submission's id: the reference the provider is asked about.
    pub attempt_id: u64,
    pub state: RealNameState,
    /// The ID number and the legal name, encrypted and bound to `user_id`.
    pub sealed: Vec<u8>,
    /// HMAC-SHA256 of the ID number under the lookup key, in hex.
    pub number_hash: String,
    pub submitted_at_ms: i64,
    /// When the provider decided (or the attempt expired); None while pending.
    pub decided_at_ms: Option<i64>,
}

/// The sealed bytes and the hash say nothing readable, and are long.
impl fmt::Debug for RealNameRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealNameRecord")
            .field("user_id", &self.user_id)
            .field("attempt_id", &self.attempt_id)
            .field("state", &self.state)
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .field("submitted_at_ms", &self.submitted_at_ms)
            .field("decided_at_ms", &self.decided_at_ms)
            .finish()
    }
}

/// What the user is shown of their own verification: the legal name they
/// gave, and the ID number only masked
/// ([`crate::policy::real_name::IdNumber::masked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealNameView {
    pub status: RealNameStatus,
    pub legal_name: Option<String>,
    pub id_number_masked: Option<String>,
    pub rejection: Option<Rejection>,
    pub submitted_at_ms: Option<i64>,
    pub decided_at_ms: Option<i64>,
}

impl RealNameView {
    pub fn unverified() -> Self {
        Self {
            status: RealNameStatus::Unverified,
            legal_name: None,
            id_number_masked: None,
            rejection: None,
            submitted_at_ms: None,
            decided_at_ms: None,
        }
    }
}
