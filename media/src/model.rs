//! The media room's types and ids, no I/O. [`MediaId`] and [`UploadId`]
//! are parsed and printed here and nowhere else.

use std::fmt;
use std::str::FromStr;

pub use superapp_proto::UserId;

/// A stored object: the lowercase hex SHA-256 of its stored bytes (64
/// characters). Content addressed, so identical bytes are one object
/// however many times they are uploaded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MediaId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a media id is 64 lowercase hex digits")]
pub struct InvalidMediaId;

impl MediaId {
    /// The id of content whose SHA-256 is `digest`.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl FromStr for MediaId {
    type Err = InvalidMediaId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 64 && s.bytes().all(|b| HEX.contains(&b));
        valid.then(|| Self(s.to_string())).ok_or(InvalidMediaId)
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An upload in progress (or done): 32 lowercase hex digits of randomness,
/// which is also what keeps one user from guessing another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an upload id is 32 lowercase hex digits")]
pub struct InvalidUploadId;

impl UploadId {
    /// A new random id.
    pub fn random() -> Self {
        use rand::RngCore as _;
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let mut hex = String::with_capacity(32);
        for byte in bytes {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UploadId {
    type Err = InvalidUploadId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 32 && s.bytes().all(|b| HEX.contains(&b));
        valid.then(|| Self(s.to_string())).ok_or(InvalidUploadId)
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an upload declares itself to be, and what an object was sniffed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image,
    Voice,
    Video,
    /// Anything; always served as a download, never inline.
    File,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kind is one of image, voice, video, file")]
pub struct InvalidKind;

impl MediaKind {
    pub const ALL: [MediaKind; 4] = [Self::Image, Self::Voice, Self::Video, Self::File];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Voice => "voice",
            Self::Video => "video",
            Self::File => "file",
        }
    }
}

impl FromStr for MediaKind {
    type Err = InvalidKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(InvalidKind)
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which form of an object a link serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    #[default]
    Original,
    /// The JPEG thumbnail of an image (when it has one).
    Thumbnail,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("variant is original or thumbnail")]
pub struct InvalidVariant;

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Original => "original",
            Self::Thumbnail => "thumbnail",
        }
    }
}

impl FromStr for Variant {
    type Err = InvalidVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "original" => Ok(Self::Original),
            "thumbnail" => Ok(Self::Thumbnail),
            _ => Err(InvalidVariant),
        }
    }
}

/// What the content's first bytes say it is: its kind, and the exact
/// content type it is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub kind: MediaKind,
    pub mime: &'static str,
    /// The image format to process, for images.
    pub image: Option<crate::image::ImageFormat>,
}

/// What is known of a stored object: the facts chat copies into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub kind: MediaKind,
    /// The content type it is served with (`application/octet-stream` for
    /// anything not recognised as an image, voice or video).
    pub mime: String,
    pub size: u64,
    /// Pixels, for images the processing read; 0 when unknown.
    pub width: u32,
    pub height: u32,
    /// Whether a thumbnail blob exists.
    pub thumbnail: bool,
}

/// A stored object as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub media_id: MediaId,
    /// The object's own facts: its kind is the sniffed one (File when the
    /// bytes are no recognised media).
    pub facts: Facts,
    /// Whether its blob has been put (an object row exists from just before
    /// the put, so that collection never deletes a blob being written).
    pub stored: bool,
    /// When someone last finished an upload of it: collection waits
    /// `media.grace_secs` from here.
    pub last_upload_ms: i64,
}

/// An upload as asked for by `POST /v1/uploads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    pub kind: MediaKind,
    /// The file name the client gave, kept for downloads of files.
    pub name: Option<String>,
    /// Keep the image's metadata (location included) as uploaded.
    pub keep_exif: bool,
    /// Upload-Length: the bytes the client will send, all told.
    pub length: u64,
}

/// An upload as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: UploadId,
    pub user: UserId,
    pub kind: MediaKind,
    pub name: Option<String>,
    pub keep_exif: bool,
    pub length: u64,
    /// Bytes durably in the staging file.
    pub offset: u64,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// Set once the upload finished: the object it made.
    pub media: Option<MediaId>,
}

/// A finished upload's object, as `GET /v1/uploads/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadView {
    pub upload: Upload,
    pub media: Option<(MediaId, Facts)>,
}

/// One user's hold on an object: they uploaded it (at least once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub user: UserId,
    pub media_id: MediaId,
    /// The kind the user declared (a PNG may be held as a "file").
    pub kind: MediaKind,
    pub name: Option<String>,
    pub size: u64,
    pub held_ms: i64,
}

/// What a user's uploads take of their quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes of the objects the user holds, each counted once.
    pub used_bytes: u64,
    /// Upload-Length of the user's open uploads: reserved, not yet used.
    pub reserved_bytes: u64,
    pub open_uploads: u32,
}

/// The per-user limits an upload's creation is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    pub quota_bytes: u64,
    pub max_open_uploads: u32,
}

/// A signed download link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Path and query, relative to the server's origin.
    pub url: String,
    pub expires_ms: i64,
}

/// What a download link names once its signature checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkParams {
    pub media_id: MediaId,
    pub variant: Variant,
    /// Present: served as an attachment with this file name.
    pub name: Option<String>,
    /// Expiry, milliseconds since the epoch.
    pub exp_ms: i64,
}

/// A single byte range, inclusive of both ends, within an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    pub fn len(self) -> u64 {
        self.last - self.first + 1
    }

    pub fn is_empty(self) -> bool {
        false
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    pub objects: u32,
    pub uploads: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_media_id_prints_as_it_was_parsed_and_refuses_anything_else() {
        let id = MediaId::from_digest(&[0xab; 32]);
        assert_eq!(id.as_str().len(), 64);
        assert_eq!(id.to_string().parse::<MediaId>().unwrap(), id);
        for bad in ["", "AB", &"A".repeat(64), &"g".repeat(64), &"a".repeat(63)] {
            assert!(bad.parse::<MediaId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn upload_ids_are_random_hex_and_parse_back() {
        let a = UploadId::random();
        assert_ne!(a, UploadId::random());
        assert_eq!(a.to_string().parse::<UploadId>().unwrap(), a);
        assert!("../etc/passwd".parse::<UploadId>().is_err());
    }

    #[test]
    fn kinds_and_variants_read_their_names() {
        for kind in MediaKind::ALL {
            assert_eq!(kind.as_str().parse::<MediaKind>().unwrap(), kind);
        }
        assert!("Image".parse::<MediaKind>().is_err());
        assert_eq!("thumbnail".parse::<Variant>().unwrap(), Variant::Thumbnail);
    }
}
