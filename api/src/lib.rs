//! The HTTP JSON API's bodies, declared once: the server's edge answers with
//! them, the client SDK reads them, and (with the `openapi` feature) the
//! server's OpenAPI document is derived from them.
//!
//! - [`accounts`]: registration, sessions and tokens, the profile, tickets,
//!   presence, real-name verification.
//! - [`calls`]: TURN credentials for calls.
//! - [`groups`]: the group API, and invitations into groups.
//! - [`media`]: uploads' status, download links, usage of the quota.
//! - [`nearby`]: people nearby: share a position, clear it, search around it.
//! - [`social`]: friend requests, contacts, hidden friends and contact
//!   search, blocks, privacy settings.
//! - [`profiles`]: one's own profile, what one sees of others, lookups by
//!   handle and phone, contact matching.
//! - [`security`]: password changes, sessions, deleting and restoring an
//!   account, users' names.
//! - [`wallet`]: the balance and limits, the payment PIN, top-ups and
//!   withdrawals, transfers, red packets and the ledger's history.
//! - [`ErrorBody`]: the body of every non-2xx answer.
//!
//! Ids are 64-bit and exceed 2^53, where JavaScript numbers lose precision,
//! so they travel as decimal strings ([`U64AsString`]); reading also accepts
//! a plain number.

pub mod accounts;
pub mod calls;
pub mod groups;
pub mod media;
pub mod nearby;
pub mod profiles;
pub mod security;
pub mod social;
pub mod wallet;

use serde::{Deserialize, Serialize};
use serde_with::{DisplayFromStr, PickFirst, Same};

pub use accounts::{
    Account, Login, Presence, RealName, RealNameRejection, RealNameStatus, Refresh, Register,
    SubmitRealName, Ticket, Tokens,
};
pub use calls::TurnCredentials;
pub use groups::{
    CreateGroup, Decide, Decided, Group, GroupInvitation, GroupInvitations, GroupJoin, GroupUpdate,
    Invite, InviteLink, Join, JoinRequest, JoinRequests, JoinResult, Member, MemberPage,
    MemberUpdate, MembersQuery, Transfer,
};
pub use media::{FileQuery, LinkRequest, MediaFacts, MediaLink, MediaUsage, UploadStatus};
pub use nearby::{LocationShared, NearbyPeople, NearbyPerson, NearbyQuery, ShareLocation};
pub use profiles::{
    ContactMatch, ContactMatches, ContactSalt, FindByHandle, FindByPhone, MatchContacts, MyProfile,
    ProfileDetails, ProfileUpdate, UserProfile,
};
pub use security::{
    AccountDeletion, ChangePassword, DeleteAccount, NamesQuery, Restore, Session, Sessions,
    UserName, UserNames,
};
pub use social::{
    Blocks, Contact, ContactPage, ContactSearchQuery, ContactUpdate, ContactsQuery,
    ContactsVersion, FoundContact, FoundContacts, FriendRequest, FriendRequestSent, FriendRequests,
    PrivacySettings, SendFriendRequest,
};
pub use wallet::{
    CallbackReceived, EntryReason, HistoryQuery, NewRedPacket, NewTopUp, NewTransfer,
    NewWithdrawal, OrderKind, OrderStatus, PacketGrab, PacketGrabbed, RedPacket, RedPacketDetails,
    RedPacketMode, RedPacketStatus, SandboxPay, SetPin, TopUpStarted, TransferStatus, WalletEntry,
    WalletEntryDetails, WalletHistory, WalletLimits, WalletOrder, WalletSummary, WalletTransfer,
};

/// `#[serde_as(as = "U64AsString")]` for u64 ids: written as JSON strings,
/// read from a string or a number; `Vec<U64AsString>` for lists of ids.
pub type U64AsString = PickFirst<(DisplayFromStr, Same)>;

/// The body of every non-2xx answer: a stable snake_case `code` to branch
/// on, a human `message`, and for refusals that pass, when to try again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_with::serde_as;

    use super::*;

    #[serde_as]
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Id {
        #[serde_as(as = "U64AsString")]
        id: u64,
    }

    #[test]
    fn an_id_is_written_as_a_string_with_every_digit() {
        let json = serde_json::to_string(&Id { id: u64::MAX }).unwrap();
        assert_eq!(json, r#"{"id":"18446744073709551615"}"#);
    }

    #[test]
    fn an_id_reads_back_from_a_string() {
        let id: Id = serde_json::from_str(r#"{"id":"123456789012345678"}"#).unwrap();
        assert_eq!(id.id, 123_456_789_012_345_678);
    }

    #[test]
    fn a_plain_number_is_accepted_too() {
        let id: Id = serde_json::from_str(r#"{"id":42}"#).unwrap();
        assert_eq!(id.id, 42);
    }

    #[test]
    fn a_string_that_is_not_a_number_is_rejected() {
        assert!(serde_json::from_str::<Id>(r#"{"id":"12a"}"#).is_err());
        assert!(serde_json::from_str::<Id>(r#"{"id":"-1"}"#).is_err());
        assert!(serde_json::from_str::<Id>(r#"{"id":-1}"#).is_err());
    }

    #[test]
    fn lists_of_ids_are_written_as_strings_and_read_from_numbers_too() {
        // An answer from a server older than invitations has no `invited`.
        let join: GroupJoin = serde_json::from_str(r#"{"added":["1",2],"pending":[]}"#).unwrap();
        assert_eq!(
            (join.added.as_slice(), join.invited.len()),
            ([1, 2].as_slice(), 0)
        );
        let back = serde_json::to_string(&join).unwrap();
        assert_eq!(back, r#"{"added":["1","2"],"pending":[],"invited":[]}"#);
    }

    #[test]
    fn tokens_read_their_ids_from_strings_and_write_them_back_as_strings() {
        let json = r#"{"user_id":"123456789012345678","session_id":"9","access_token":"a",
            "access_expires_at_ms":1,"refresh_token":"r","refresh_expires_at_ms":2}"#;
        let tokens: Tokens = serde_json::from_str(json).unwrap();
        assert_eq!(tokens.user_id, 123_456_789_012_345_678);
        assert_eq!(tokens.session_id, 9);
        let back = serde_json::to_value(&tokens).unwrap();
        assert_eq!(back["user_id"], "123456789012345678");
        assert_eq!(back["session_id"], "9");
    }

    #[test]
    fn debug_output_of_a_real_name_submission_never_shows_the_name_or_number() {
        let body = SubmitRealName {
            legal_name: "张三".into(),
            id_number: "11010519491231002X".into(),
        };
        let shown = format!("{body:?}");
        assert!(
            !shown.contains("张三") && !shown.contains("1101"),
            "{shown}"
        );
    }

    #[test]
    fn a_real_name_status_is_written_in_snake_case() {
        let json = serde_json::to_value(RealName {
            status: RealNameStatus::Rejected,
            legal_name: None,
            id_number_masked: None,
            rejection: Some(RealNameRejection::Mismatch),
            submitted_at_ms: Some(1),
            decided_at_ms: Some(2),
        })
        .unwrap();
        assert_eq!(json["status"], "rejected");
        assert_eq!(json["rejection"], "mismatch");
        assert!(json["legal_name"].is_null());
    }

    #[test]
    fn debug_output_of_tokens_never_shows_the_secrets() {
        let tokens = Tokens {
            user_id: 1,
            session_id: 2,
            access_token: "secret-access".into(),
            access_expires_at_ms: 0,
            refresh_token: "secret-refresh".into(),
            refresh_expires_at_ms: 0,
        };
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
