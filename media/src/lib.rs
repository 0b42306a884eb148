//! Media: uploads (tus 1.0.0, resumable, streamed to a staging file),
//! content-addressed objects checked against their declared kind by their
//! magic bytes, image processing off the async threads, blobs on the
//! filesystem or an S3-compatible store, short-lived signed download links
//! with byte ranges, per-user quotas, and the collection of what nothing
//! references any more.
//!
//! The room pattern (docs/architecture.md, "The room pattern"):
//!
//! - [`model`]: [`MediaId`], [`MediaKind`], uploads, facts; no I/O.
//! - [`policy`]: the rules as pure functions: sniffing, kinds, sizes and
//!   quota, tus metadata, ranges, link signatures, file names, collection.
//! - [`service`]: [`Media`], the operations the edge and chat call.
//! - [`config`]: the `[media]` section of the configuration.
//! - [`error`]: [`MediaError`], the outcomes callers branch on.
//! - [`ports`]: what the room needs from others ([`Sight`]: which media a
//!   message references, for those who may see it).
//! - [`store`]: [`MediaStore`], the storage trait, and the SQLite backend.
//! - [`blobs`]: [`Blobs`], the object-store port, and its `object_store`
//!   implementation (filesystem, S3).
//! - [`image`]: image processing (dimensions, metadata, thumbnails).
//! - [`conformance`] (tests, or the `conformance` feature): the contracts
//!   every store backend and every blob store must meet.
//!
//! Invariants: an object's id is the SHA-256 of its stored bytes, and its
//! blob is put once however often it is uploaded; no byte is stored for an
//! upload before its length passed its kind's limit and its owner's quota;
//! a declared image, voice or video is what its magic bytes say, and
//! anything else is only ever served as an attachment; a link is granted
//! only to a holder or to someone who may see a message referencing the
//! object, and a refusal never says whether the object exists; an object is
//! collected only when nothing references it and nobody uploaded it within
//! the grace period.

pub mod blobs;
pub mod config;
pub mod error;
pub mod image;
pub mod model;
pub mod policy;
pub mod ports;
pub mod service;
pub mod store;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use blobs::{BlobError, Blobs, ObjectStoreBlobs};
pub use error::MediaError;
pub use model::{Facts, MediaId, MediaKind, UploadId, Variant};
pub use policy::LinkKey;
pub use ports::{NoSight, Sight};
pub use service::Media;
pub use store::{MediaStore, SqliteMediaStore};
