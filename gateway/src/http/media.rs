//! Media at the edge: tus 1.0.0 uploads (core, creation,
//! creation-with-upload, termination, expiration) under `/v1/uploads`,
//! signed download links, the downloads they open, and the caller's usage;
//! and the mapping of the room's outcomes to stable codes.
//!
//! Upload bodies are streamed into the room (never read whole), so the
//! server's body limit does not apply to these routes: Upload-Length,
//! checked against the kind's limit and the quota before a byte is stored,
//! replaces it. Downloads carry no bearer token (they are opened by
//! `<img>`, players and download managers): the link's signature is the
//! credential, and the request budget counts them by client address.
//! Whatever an object holds, it is served so that no browser renders it as
//! a page of this origin: `nosniff`, a sandboxing CSP, and every type but
//! the sniffed image, voice and video ones as an attachment.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt as _};
use superapp_api::{
    ErrorBody, FileQuery, LinkRequest, MediaFacts, MediaLink, MediaUsage, UploadStatus,
};
use superapp_kit::store::StoreError;
use superapp_media::model::{LinkParams, NewUpload, UploadView, UserId};
use superapp_media::policy::{self, parse_metadata};
use superapp_media::service::LinkRequest as RoomLinkRequest;
use superapp_media::{Facts, Media, MediaError, MediaId, UploadId, Variant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, ApiQuery, AuthUser, Rooms};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Rooms> {
    // Upload bodies are streamed and bounded by Upload-Length instead.
    let uploads = OpenApiRouter::new()
        .routes(routes!(options_uploads, create_upload))
        .routes(routes!(
            head_upload,
            patch_upload,
            get_upload,
            delete_upload
        ))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .merge(uploads)
        .routes(routes!(link))
        .routes(routes!(usage))
        .routes(routes!(download))
}

const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration";
const OFFSET_STREAM: &str = "application/offset+octet-stream";

/// The room's outcomes as the API's stable codes.
impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            MediaError::UnknownUpload => (S::NOT_FOUND, "unknown_upload"),
            MediaError::MediaNotFound => (S::NOT_FOUND, "media_not_found"),
            MediaError::InvalidMetadata { .. } => (S::BAD_REQUEST, "invalid_metadata"),
            MediaError::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "too_large"),
            MediaError::QuotaExceeded { .. } => (S::PAYLOAD_TOO_LARGE, "quota_exceeded"),
            MediaError::TooManyUploads { .. } => (S::TOO_MANY_REQUESTS, "too_many_uploads"),
            MediaError::OffsetMismatch { .. } => (S::CONFLICT, "offset_mismatch"),
            MediaError::UploadBusy => (S::CONFLICT, "upload_busy"),
            MediaError::BeyondLength { .. } => (S::PAYLOAD_TOO_LARGE, "beyond_length"),
            MediaError::KindMismatch { .. } => (S::UNPROCESSABLE_ENTITY, "kind_mismatch"),
            MediaError::UnreadableImage => (S::UNPROCESSABLE_ENTITY, "unreadable_image"),
            MediaError::ImageTooLarge { .. } => (S::UNPROCESSABLE_ENTITY, "image_too_large"),
            MediaError::Interrupted {
                timed_out: true, ..
            } => (S::REQUEST_TIMEOUT, "body_timeout"),
            MediaError::Interrupted { .. } => (S::BAD_REQUEST, "upload_interrupted"),
            MediaError::LinkExpired => (S::FORBIDDEN, "link_expired"),
            MediaError::BadSignature => (S::FORBIDDEN, "bad_signature"),
            MediaError::RangeNotSatisfiable { .. } => {
                (S::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            MediaError::InvalidReferrer => (S::BAD_REQUEST, "invalid_referrer"),
            MediaError::Collecting => {
                let mut busy = Self::busy();
                busy.message = e.to_string();
                return busy;
            }
            MediaError::Store(StoreError::Busy) => return Self::busy(),
            MediaError::Dependency(cause) => {
                tracing::warn!(error = %cause, "a room media depends on failed");
                return Self::unavailable("a dependency is unavailable; retry");
            }
            MediaError::Store(_) | MediaError::Blob(_) | MediaError::Io(_) => {
                return Self::internal(&e);
            }
        };
        Self::new(status, code, e.to_string())
    }
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A header of a tus request, read as text.
fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Refuses a tus request of another protocol version (412, as tus says),
/// naming the version this server speaks.
fn tus_version(headers: &HeaderMap) -> Result<(), Box<Response>> {
    if text(headers, "tus-resumable") == Some(TUS_VERSION) {
        return Ok(());
    }
    let mut response = ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "unsupported_tus_version",
        "Tus-Resumable: 1.0.0 is required",
    )
    .into_response();
    response
        .headers_mut()
        .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    Err(Box::new(response))
}

fn tus_response(status: StatusCode) -> Response {
    let mut response = status.into_response();
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

fn with_tus(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

/// The headers every answer about an upload's progress carries.
/// The answer to a tus request on an upload: `status` with where the upload
/// stands, or the refusal (with the tus headers).
fn progress(status: StatusCode, result: Result<UploadView, MediaError>) -> Response {
    let view = match result {
        Ok(view) => view,
        Err(e) => return with_tus(e.into()),
    };
    let mut response = tus_response(status);
    let headers = response.headers_mut();
    headers.insert("upload-offset", view.upload.offset.into());
    headers.insert("upload-length", view.upload.length.into());
    if view.upload.media.is_none() {
        headers.insert(
            "upload-expires",
            value(&policy::http_date(view.upload.expires_ms)),
        );
    }
    if let Some(media) = &view.upload.media {
        headers.insert("upload-media-id", value(media.as_str()));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A header holding a decimal byte count (`Upload-Length`, `Upload-Offset`).
fn byte_count(headers: &HeaderMap, name: &str) -> Option<u64> {
    text(headers, name)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
}

/// The request body as the room reads it: chunks, or an I/O error whose
/// kind says whether the body missed its deadline.
fn body_stream(
    body: Body,
) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Unpin {
    body.into_data_stream().map(|chunk| {
        chunk.map_err(|e| {
            let kind = if super::timed_out(&e) {
                std::io::ErrorKind::TimedOut
            } else {
                std::io::ErrorKind::ConnectionAborted
            };
            std::io::Error::new(kind, e.to_string())
        })
    })
}

/// Refuses a body of any type but tus' own (415).
fn offset_stream(headers: &HeaderMap) -> Result<(), Box<Response>> {
    let content_type =
        text(headers, "content-type").map(|t| t.split(';').next().unwrap_or("").trim());
    if content_type == Some(OFFSET_STREAM) {
        return Ok(());
    }
    Err(Box::new(with_tus(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Content-Type: application/offset+octet-stream is required",
    ))))
}

fn upload_id(raw: &str) -> Result<UploadId, Box<Response>> {
    raw.parse()
        .map_err(|_| Box::new(with_tus(MediaError::UnknownUpload.into())))
}

/// The prologue of a tus request on one upload: the caller (a refusal
/// keeps the tus headers), then the `checks` of its headers, then which
/// upload it names.
fn tus_upload(
    auth: Result<AuthUser, ApiError>,
    checks: Result<(), Box<Response>>,
    raw: &str,
) -> Result<(UserId, UploadId), Box<Response>> {
    let AuthUser(me) = auth.map_err(|e| Box::new(with_tus(e)))?;
    checks?;
    Ok((me.sub, upload_id(raw)?))
}

fn facts_body(media_id: &MediaId, facts: &Facts) -> MediaFacts {
    MediaFacts {
        media_id: media_id.to_string(),
        kind: facts.kind.to_string(),
        mime: facts.mime.clone(),
        size: facts.size,
        width: facts.width,
        height: facts.height,
        thumbnail: facts.thumbnail,
    }
}

/// What this server speaks of tus: its version, extensions and largest upload
#[utoipa::path(options, path = "/v1/uploads", tag = "media",
    responses(
        (status = 204, description = "Tus-Version: 1.0.0, Tus-Extension, Tus-Max-Size"),
))]
async fn options_uploads(State(media): State<Arc<Media>>) -> Response {
    let mut response = tus_response(StatusCode::NO_CONTENT);
    let headers = response.headers_mut();
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    headers.insert("tus-max-size", media.max_size().into());
    response
}

/// Begin an upload (tus creation; with a body, creation-with-upload). Upload-Metadata carries kind (image, voice, video or file; required), name and keep_exif ("true" keeps an image's metadata, location included), each base64
#[utoipa::path(post, path = "/v1/uploads", tag = "media", security(("bearer" = [])),
    params(
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Length" = u64, Header, description = "The upload's whole size in bytes"),
        ("Upload-Metadata" = String, Header, description = "tus metadata: `kind <base64>` required; `name`, `keep_exif` optional"),
    ),
    request_body(content = String, content_type = "application/offset+octet-stream", description = "Optional: the first bytes"),
    responses(
        (status = 201, description = "Created: Location, Upload-Offset, Upload-Expires; Upload-Media-Id when the body completed it"),
        (status = 400, description = "invalid_upload_length, invalid_metadata, upload_interrupted", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 412, description = "unsupported_tus_version, with Tus-Version", body = ErrorBody),
        (status = 413, description = "too_large (the kind's limit), quota_exceeded, beyond_length", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "kind_mismatch, unreadable_image, image_too_large", body = ErrorBody),
        (status = 429, description = "too_many_uploads", body = ErrorBody),
        (status = 503, description = "busy", body = ErrorBody),
))]
async fn create_upload(
    State(media): State<Arc<Media>>,
    auth: Result<AuthUser, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let AuthUser(me) = match auth {
        Ok(user) => user,
        Err(e) => return with_tus(e),
    };
    let has_body = headers.contains_key(header::CONTENT_TYPE)
        || text(&headers, "content-length").is_some_and(|l| l != "0");
    if has_body && let Err(refused) = offset_stream(&headers) {
        return *refused;
    }
    if let Err(refused) = tus_version(&headers) {
        return *refused;
    }
    let Some(length) = byte_count(&headers, "upload-length") else {
        return with_tus(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_upload_length",
            "Upload-Length is required: the upload's size in bytes (deferred lengths are not supported)",
        ));
    };
    let metadata = match parse_metadata(text(&headers, "upload-metadata").unwrap_or("")) {
        Ok(metadata) => metadata,
        Err(e) => return with_tus(e.into()),
    };
    let new = NewUpload {
        kind: metadata.kind,
        name: metadata.name,
        keep_exif: metadata.keep_exif,
        length,
    };
    let created = media
        .create(me.sub, new, has_body.then(|| body_stream(body)))
        .await;
    let location = (created.as_ref().ok()).map(|view| format!("/v1/uploads/{}", view.upload.id));
    let mut response = progress(StatusCode::CREATED, created);
    if let Some(location) = location {
        response
            .headers_mut()
            .insert(header::LOCATION, value(&location));
    }
    response
}

/// Where an upload stands (tus): Upload-Offset and Upload-Length
#[utoipa::path(head, path = "/v1/uploads/{upload_id}", tag = "media", security(("bearer" = [])),
    params(
        ("upload_id" = String, Path, description = "From the Location of its creation"),
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
    ),
    responses(
        (status = 200, description = "Upload-Offset, Upload-Length, Cache-Control: no-store; Upload-Media-Id once complete"),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked"),
        (status = 404, description = "unknown_upload (also another user's, or expired)"),
        (status = 412, description = "unsupported_tus_version"),
))]
async fn head_upload(
    State(media): State<Arc<Media>>,
    auth: Result<AuthUser, ApiError>,
    ApiPath(raw): ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    let (me, id) = match tus_upload(auth, tus_version(&headers), &raw) {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    progress(StatusCode::OK, media.status(me, &id).await)
}

/// Send the next bytes of an upload (tus): the body is appended at Upload-Offset, which must be where the upload stands; the last byte finishes it
#[utoipa::path(patch, path = "/v1/uploads/{upload_id}", tag = "media", security(("bearer" = [])),
    params(
        ("upload_id" = String, Path, description = "From the Location of its creation"),
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Offset" = u64, Header, description = "Where the upload stands (HEAD tells)"),
    ),
    request_body(content = String, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Appended: Upload-Offset; Upload-Media-Id when this completed the upload"),
        (status = 400, description = "invalid_upload_offset, upload_interrupted", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_upload (also another user's, or expired)", body = ErrorBody),
        (status = 408, description = "body_timeout: what arrived is kept", body = ErrorBody),
        (status = 409, description = "offset_mismatch, upload_busy", body = ErrorBody),
        (status = 412, description = "unsupported_tus_version", body = ErrorBody),
        (status = 413, description = "beyond_length: nothing of this request was kept", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "kind_mismatch, unreadable_image, image_too_large: the upload is discarded", body = ErrorBody),
        (status = 503, description = "busy", body = ErrorBody),
))]
async fn patch_upload(
    State(media): State<Arc<Media>>,
    auth: Result<AuthUser, ApiError>,
    ApiPath(raw): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let checks = offset_stream(&headers).and_then(|()| tus_version(&headers));
    let (me, id) = match tus_upload(auth, checks, &raw) {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let Some(offset) = byte_count(&headers, "upload-offset") else {
        return with_tus(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_upload_offset",
            "Upload-Offset is required: where the upload stands, in bytes",
        ));
    };
    let appended = media.append(me, &id, offset, body_stream(body)).await;
    progress(StatusCode::NO_CONTENT, appended)
}

/// An upload's progress and, once complete, the object it made
#[utoipa::path(get, path = "/v1/uploads/{upload_id}", tag = "media", security(("bearer" = [])),
    params(("upload_id" = String, Path, description = "From the Location of its creation")),
    responses(
        (status = 200, description = "The upload", body = UploadStatus),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_upload (also another user's, or expired)", body = ErrorBody),
))]
async fn get_upload(
    State(media): State<Arc<Media>>,
    AuthUser(me): AuthUser,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<UploadStatus>, ApiError> {
    let id: UploadId = raw.parse().map_err(|_| MediaError::UnknownUpload)?;
    let view = media.status(me.sub, &id).await?;
    Ok(Json(UploadStatus {
        upload_id: view.upload.id.to_string(),
        offset: view.upload.offset,
        length: view.upload.length,
        complete: view.upload.media.is_some(),
        media: view.media.map(|(id, facts)| facts_body(&id, &facts)),
    }))
}

/// Cancel an upload (tus termination); its received bytes are deleted
#[utoipa::path(delete, path = "/v1/uploads/{upload_id}", tag = "media", security(("bearer" = [])),
    params(
        ("upload_id" = String, Path, description = "From the Location of its creation"),
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
    ),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "unknown_upload", body = ErrorBody),
        (status = 409, description = "upload_busy: a request is writing it", body = ErrorBody),
        (status = 412, description = "unsupported_tus_version", body = ErrorBody),
))]
async fn delete_upload(
    State(media): State<Arc<Media>>,
    auth: Result<AuthUser, ApiError>,
    ApiPath(raw): ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    let (me, id) = match tus_upload(auth, tus_version(&headers), &raw) {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    match media.cancel(me, &id).await {
        Ok(()) => tus_response(StatusCode::NO_CONTENT),
        Err(e) => with_tus(e.into()),
    }
}

/// A short-lived signed link to download media you uploaded, media of a message you may see (name it by conversation_id and seq), or a user's avatar (name the user by user_id)
#[utoipa::path(post, path = "/v1/media/{media_id}/link", tag = "media", security(("bearer" = [])),
    params(("media_id" = String, Path, description = "64 lowercase hex digits")),
    request_body = LinkRequest,
    responses(
        (status = 200, description = "A link that works without a token until expires_ms", body = MediaLink),
        (status = 400, description = "invalid_variant, invalid_message_ref", body = ErrorBody),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
        (status = 404, description = "media_not_found: no such media, or none you may see", body = ErrorBody),
        (status = 503, description = "unavailable", body = ErrorBody),
))]
async fn link(
    State(media): State<Arc<Media>>,
    AuthUser(me): AuthUser,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<LinkRequest>,
) -> Result<Json<MediaLink>, ApiError> {
    let variant = match body.variant.as_deref() {
        None => Variant::Original,
        Some(v) => v.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_variant",
                "variant is original or thumbnail",
            )
        })?,
    };
    let message = match (body.conversation_id, body.seq, body.user_id) {
        (None, None, _) => None,
        (Some(conversation), Some(seq), None) => Some((conversation, seq)),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_message_ref",
                "conversation_id and seq go together, and name a message instead of a user_id",
            ));
        }
    };
    let profile = body.user_id.map(UserId);
    let media_id: MediaId = raw.parse().map_err(|_| MediaError::MediaNotFound)?;
    let link = media
        .link(
            me.sub,
            &media_id,
            RoomLinkRequest {
                variant,
                message,
                profile,
            },
        )
        .await?;
    Ok(Json(MediaLink {
        url: link.url,
        expires_ms: link.expires_ms,
    }))
}

/// What your uploads take of your storage quota
#[utoipa::path(get, path = "/v1/media/usage", tag = "media", security(("bearer" = [])),
    responses(
        (status = 200, description = "Usage", body = MediaUsage),
        (status = 401, description = "missing_token, invalid_token, token_expired or session_revoked", body = ErrorBody),
))]
async fn usage(
    State(media): State<Arc<Media>>,
    AuthUser(me): AuthUser,
) -> Result<Json<MediaUsage>, ApiError> {
    let usage = media.usage(me.sub).await?;
    Ok(Json(MediaUsage {
        used_bytes: usage.used_bytes,
        quota_bytes: usage.quota_bytes,
        open_uploads: usage.open_uploads,
    }))
}

/// Download by a signed link (no token): one byte range at most (Range: bytes=a-b, a- or -n). Images, voice and video are served inline as their sniffed type; anything else as an attachment
#[utoipa::path(get, path = "/v1/files/{media_id}", tag = "media",
    params(
        ("media_id" = String, Path, description = "64 lowercase hex digits"),
        FileQuery,
        ("Range" = Option<String>, Header, description = "bytes=a-b, bytes=a- or bytes=-n"),
    ),
    responses(
        (status = 200, description = "The object, with ETag, Accept-Ranges, X-Content-Type-Options: nosniff, Content-Security-Policy: sandbox, Content-Disposition"),
        (status = 206, description = "The range asked for, with Content-Range"),
        (status = 403, description = "bad_signature, link_expired", body = ErrorBody),
        (status = 404, description = "media_not_found: collected since the link was made", body = ErrorBody),
        (status = 416, description = "range_not_satisfiable, with Content-Range: bytes */size", body = ErrorBody),
        (status = 429, description = "rate_limited: too many downloads from this address", body = ErrorBody),
))]
async fn download(
    State(media): State<Arc<Media>>,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(query): ApiQuery<FileQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // A link this server made names a valid id and variant: anything else
    // was not signed here.
    let media_id: MediaId = raw.parse().map_err(|_| MediaError::BadSignature)?;
    let variant: Variant = query
        .variant
        .as_deref()
        .unwrap_or("original")
        .parse()
        .map_err(|_| MediaError::BadSignature)?;
    let params = LinkParams {
        media_id,
        variant,
        name: query.name,
        exp_ms: query.exp,
    };
    let range = text(&headers, "range");
    let download = match media.open(params, &query.sig, range).await {
        Ok(download) => download,
        Err(MediaError::RangeNotSatisfiable { size }) => {
            let mut response =
                ApiError::from(MediaError::RangeNotSatisfiable { size }).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, value(&format!("bytes */{size}")));
            return Ok(response);
        }
        Err(e) => return Err(e.into()),
    };
    let (status, length) = match download.range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.len()),
        None => (StatusCode::OK, download.size),
    };
    let body = Body::from_stream(
        download
            .body
            .map(|chunk| chunk.map_err(std::io::Error::other)),
    );
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, value(&download.content_type));
    h.insert(header::CONTENT_LENGTH, length.into());
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(r) = download.range {
        h.insert(
            header::CONTENT_RANGE,
            value(&format!("bytes {}-{}/{}", r.first, r.last, download.size)),
        );
    }
    h.insert(header::ETAG, value(&format!("\"{}\"", download.etag)));
    h.insert(header::CONTENT_DISPOSITION, value(&download.disposition));
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(
        header::CACHE_CONTROL,
        value(&format!("private, max-age={}", download.max_age_secs)),
    );
    Ok(response)
}
