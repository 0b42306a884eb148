//! Media's API: tus uploads (`/v1/uploads`, whose headers carry the
//! protocol; `GET /v1/uploads/{id}` shows one as JSON), signed download
//! links (`POST /v1/media/{media_id}/link`), the downloads they open
//! (`GET /v1/files/{media_id}`), and the caller's usage of their quota.

use serde::{Deserialize, Serialize};

/// An object's facts, as a message copies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MediaFacts {
    /// The lowercase hex SHA-256 of the stored bytes.
    pub media_id: String,
    /// image, voice, video or file.
    pub kind: String,
    /// The content type it is served with.
    pub mime: String,
    pub size: u64,
    /// Pixels, for images; 0 when unknown.
    pub width: u32,
    pub height: u32,
    /// Whether a thumbnail may be linked (`variant: "thumbnail"`).
    pub thumbnail: bool,
}

/// `GET /v1/uploads/{upload_id}`: where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadStatus {
    pub upload_id: String,
    /// Bytes received and kept.
    pub offset: u64,
    /// Upload-Length.
    pub length: u64,
    pub complete: bool,
    /// The object it made, once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaFacts>,
}

/// `POST /v1/media/{media_id}/link`: a link for an object you uploaded, or
/// one referenced by a message you may see (name it by conversation and
/// seq), or a user's avatar (name the user).
#[serde_with::serde_as]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkRequest {
    /// original (the default) or thumbnail.
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub seq: Option<u64>,
    /// The user whose avatar (`media:<media_id>`) it is.
    #[serde(default)]
    #[serde_as(as = "Option<crate::U64AsString>")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub user_id: Option<u64>,
}

/// A signed download link: a path and query on this server, which works
/// without a token until `expires_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MediaLink {
    pub url: String,
    pub expires_ms: i64,
}

/// `GET /v1/media/usage`: what your uploads take of your quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MediaUsage {
    /// Bytes of the objects you uploaded that are not yet collected, each
    /// counted once.
    pub used_bytes: u64,
    pub quota_bytes: u64,
    /// Uploads begun and not finished.
    pub open_uploads: u32,
}

/// `GET /v1/files/{media_id}` query: the parameters of a signed link.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct FileQuery {
    /// original or thumbnail.
    #[serde(default)]
    pub variant: Option<String>,
    /// The file name of a download (then served as an attachment).
    #[serde(default)]
    pub name: Option<String>,
    /// When the link expires, milliseconds since the epoch.
    pub exp: i64,
    /// The link's signature.
    pub sig: String,
}
