//! The outcomes of media operations that callers branch on.

use superapp_kit::store::StoreError;

use crate::blobs::BlobError;
use crate::model::MediaKind;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// No such upload, or another user's (the answer does not say which).
    #[error("no such upload")]
    UnknownUpload,
    /// No such object, or one the caller may not see (never says which).
    #[error("no such media")]
    MediaNotFound,
    #[error("invalid Upload-Metadata: {reason}")]
    InvalidMetadata { reason: &'static str },
    #[error("an upload of this kind is at most {max} bytes")]
    TooLarge { max: u64 },
    #[error("the upload would pass your storage quota of {quota_bytes} bytes")]
    QuotaExceeded { quota_bytes: u64 },
    #[error("at most {max} uploads open at once; finish or cancel one")]
    TooManyUploads { max: u32 },
    /// Upload-Offset is not where the upload stands.
    #[error("the upload is at offset {offset}")]
    OffsetMismatch { offset: u64 },
    /// Another request is writing this upload right now.
    #[error("another request is writing this upload")]
    UploadBusy,
    /// The request carried bytes past Upload-Length; none of them was kept.
    #[error("the body goes past Upload-Length ({length} bytes)")]
    BeyondLength { length: u64 },
    /// The content is not what the upload declared; it was discarded.
    #[error("declared {declared} but the content is {sniffed}")]
    KindMismatch {
        declared: MediaKind,
        sniffed: MediaKind,
    },
    #[error("not a readable image")]
    UnreadableImage,
    #[error("the image has more than {max} pixels")]
    ImageTooLarge { max: u64 },
    /// The request body failed before its end (the connection was cut, or
    /// it came too slowly); what arrived is kept and the upload resumes
    /// from it.
    #[error("the body was interrupted at offset {offset}")]
    Interrupted { offset: u64, timed_out: bool },
    #[error("the link has expired")]
    LinkExpired,
    #[error("the link's signature does not match")]
    BadSignature,
    #[error("the range is not satisfiable: the object has {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// A referrer key is empty or too long.
    #[error("a referrer is 1 to 200 bytes")]
    InvalidReferrer,
    /// The object is being collected right now: retry in a moment.
    #[error("the object is being collected; retry")]
    Collecting,
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("blob storage failed: {0}")]
    Blob(#[from] BlobError),
    #[error("file i/o failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("a dependency failed: {0}")]
    Dependency(String),
}
