//! The media room's storage, in the room's terms, shaped as partition key +
//! sort key so that SQLite, ScyllaDB and PostgreSQL implement it alike:
//!
//! | table | partition | sort | notes |
//! |---|---|---|---|
//! | uploads | upload | | owner, declared kind and name, Upload-Length, bytes received, expiry, and once finished the object it made; by owner for the open-upload count, by expiry for the sweep |
//! | objects | media | | sniffed kind and content type, size, dimensions, thumbnail, whether the blob is put, last upload |
//! | holdings | user | media | who uploaded what (declared kind, name, size): the quota is their sum |
//! | access | user | media | who was granted a link through a message they may see: they may reference it too |
//! | refs | media | referrer | who references an object (`m:<conversation>:<seq>`, later posts and profiles); by referrer to detach |
//! | doomed | media | | objects being collected: their rows are gone, their blobs going |
//!
//! Collection is three idempotent steps, safe when several nodes sweep at
//! once: [`MediaStore::doom`] moves collectable objects
//! ([`crate::policy::collectable`], decided inside its write) to `doomed`
//! and deletes their rows, holdings and access; the sweeper deletes their
//! blobs; [`MediaStore::forget_doomed`] drops the `doomed` row. An upload
//! that finishes with the same bytes meanwhile is told
//! [`MediaError::Collecting`] by [`MediaStore::prepare_object`] and retries,
//! so a blob is never deleted after a new holder was recorded for it.
//!
//! [`crate::conformance`] is the behaviour every backend must show.

mod sqlite;

pub use sqlite::SqliteMediaStore;
pub use superapp_kit::store::StoreError;

use superapp_kit::BoxFuture;

use crate::MediaError;
use crate::model::{
    Facts, Holding, MediaId, StoredObject, Upload, UploadId, UploadLimits, Usage, UserId,
};

/// What a store operation answers: its result, a refusal, or a failure.
pub type Outcome<T> = BoxFuture<'static, Result<T, MediaError>>;

pub trait MediaStore: Send + Sync + 'static {
    /// Records a new upload, if its owner may open it
    /// ([`crate::policy::may_open`] against their usage at `now_ms`,
    /// decided inside the write).
    fn open_upload(&self, upload: Upload, limits: UploadLimits, now_ms: i64) -> Outcome<()>;
    /// The upload, finished or not, expired or not; None when unknown.
    fn upload(&self, id: &UploadId) -> Outcome<Option<Upload>>;
    /// Moves an unfinished upload's offset from `from` to `to`; false (and
    /// nothing changed) when it is not at `from` any more.
    fn advance(&self, id: &UploadId, from: u64, to: u64) -> Outcome<bool>;
    /// Deletes the upload's row (finished or not).
    fn discard_upload(&self, id: &UploadId) -> Outcome<()>;
    /// What `user` holds and has reserved at `now_ms`.
    fn usage(&self, user: UserId, now_ms: i64) -> Outcome<Usage>;
    /// Records the object about to be put (or bumps its last upload to
    /// `now_ms`); answers whether its blob is already stored, so the put
    /// can be skipped. Refused with [`MediaError::Collecting`] while the
    /// object is doomed.
    fn prepare_object(&self, media_id: MediaId, facts: Facts, now_ms: i64) -> Outcome<bool>;
    /// Marks the object's blob as stored.
    fn mark_stored(&self, media_id: MediaId) -> Outcome<()>;
    /// Finishes an upload with the object it made, and records its owner's
    /// holding of it (`size` bytes of their quota, once however often they
    /// upload it). Refused with [`MediaError::Collecting`] when the object
    /// has no row (collected since [`MediaStore::prepare_object`]).
    fn complete_upload(&self, id: UploadId, media_id: MediaId, now_ms: i64) -> Outcome<()>;
    fn object(&self, media_id: &MediaId) -> Outcome<Option<StoredObject>>;
    fn holding(&self, user: UserId, media_id: &MediaId) -> Outcome<Option<Holding>>;
    /// Records that `user` may reference `media_id` from now on.
    fn grant_access(&self, user: UserId, media_id: MediaId, now_ms: i64) -> Outcome<()>;
    /// For each id: its facts when `user` holds it (with the kind they
    /// declared) or was granted access to it (with the object's own kind),
    /// and its blob is stored; else None.
    fn usable(&self, user: UserId, ids: Vec<MediaId>) -> Outcome<Vec<Option<Facts>>>;
    /// Records that `referrer` references each of `ids` (again: no change).
    fn attach(&self, ids: Vec<MediaId>, referrer: String) -> Outcome<()>;
    /// Drops every reference `referrer` holds.
    fn detach(&self, referrer: String) -> Outcome<()>;
    /// Moves up to `limit` collectable objects to the doomed list, deleting
    /// their rows, holdings and access, and answers them with whether they
    /// had a thumbnail.
    fn doom(&self, now_ms: i64, grace_ms: i64, limit: u32) -> Outcome<Vec<(MediaId, bool)>>;
    /// Up to `limit` objects doomed before `doomed_before_ms` (left by a
    /// sweep that stopped halfway).
    fn doomed(&self, limit: u32, doomed_before_ms: i64) -> Outcome<Vec<MediaId>>;
    /// Drops a doomed object once its blobs are deleted.
    fn forget_doomed(&self, media_id: MediaId) -> Outcome<()>;
    /// Up to `limit` unfinished uploads expired at `now_ms`, and finished
    /// ones past their expiry (their rows are kept until then, for
    /// `GET /v1/uploads/{id}`).
    fn expired_uploads(&self, now_ms: i64, limit: u32) -> Outcome<Vec<Upload>>;
}
