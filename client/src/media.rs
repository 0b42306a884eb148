//! Media over HTTP: uploads by tus 1.0.0 from a file, in chunks (a cut
//! connection resumes from the offset the server kept), signed links, and
//! downloads into a file. Neither direction holds a whole file in memory:
//! an upload holds one chunk, a download one network read.

use std::path::Path;

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use crate::error::{ClientError, Result};
use crate::http::{HttpClient, NO_BODY, api_error};

pub use superapp_api::{LinkRequest, MediaFacts, MediaLink, MediaUsage, UploadStatus};

/// A chunk small enough to hold in memory, large enough that the round
/// trips cost little next to the bytes.
pub const DEFAULT_CHUNK: usize = 8 * 1024 * 1024;

/// How often one chunk is tried again after the connection failed.
const CHUNK_ATTEMPTS: u32 = 3;

/// What to upload: the kind the server checks against the content, the file
/// name shown to recipients, and whether an image keeps its metadata.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    /// image, voice, video or file.
    pub kind: &'a str,
    pub name: Option<&'a str>,
    pub keep_exif: bool,
    /// Bytes per PATCH (at least 1).
    pub chunk: usize,
}

impl Default for Upload<'_> {
    fn default() -> Self {
        Upload {
            kind: "file",
            name: None,
            keep_exif: false,
            chunk: DEFAULT_CHUNK,
        }
    }
}

impl HttpClient {
    /// Uploads the file at `path` and answers the object it made. A chunk
    /// whose connection fails is resumed from the offset the server kept.
    pub async fn upload_file(
        &self,
        token: &str,
        path: &Path,
        upload: &Upload<'_>,
    ) -> Result<MediaFacts> {
        let mut file = tokio::fs::File::open(path).await?;
        let length = file.metadata().await?.len();
        let location = self.create_upload(token, length, upload).await?;
        let mut buffer = vec![0; upload.chunk.max(1)];
        let mut offset = 0;
        while offset < length {
            let want = buffer
                .len()
                .min(usize::try_from(length - offset).unwrap_or(usize::MAX));
            file.read_exact(&mut buffer[..want]).await?;
            offset = self
                .patch_chunk(token, &location, offset, &buffer[..want])
                .await?;
            // The server may have kept less than was sent (a cut connection
            // it noticed first): read on from where it stands.
            file.seek(std::io::SeekFrom::Start(offset)).await?;
        }
        let status = self.upload_status(token, &location).await?;
        status.media.ok_or_else(|| {
            ClientError::Decode(format!("{location} is complete but names no media"))
        })
    }

    /// `POST /v1/uploads`: begins an upload of `length` bytes and answers
    /// its location (`/v1/uploads/{id}`).
    pub async fn create_upload(
        &self,
        token: &str,
        length: u64,
        upload: &Upload<'_>,
    ) -> Result<String> {
        let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
        let mut metadata = vec![format!("kind {}", b64(upload.kind))];
        if let Some(name) = upload.name {
            metadata.push(format!("name {}", b64(name)));
        }
        if upload.keep_exif {
            metadata.push(format!("keep_exif {}", b64("true")));
        }
        let response = self
            .start(Method::POST, "/v1/uploads", Some(token), NO_BODY)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", length)
            .header("upload-metadata", metadata.join(","))
            .send()
            .await?;
        let response = success(response).await?;
        header(&response, "location")
    }

    /// `PATCH` one chunk at `offset`, tried again from the server's offset
    /// when the connection fails; answers the offset after it.
    async fn patch_chunk(
        &self,
        token: &str,
        location: &str,
        offset: u64,
        chunk: &[u8],
    ) -> Result<u64> {
        let mut at = offset;
        let end = offset + chunk.len() as u64;
        let mut attempts = 0;
        loop {
            let start = usize::try_from(at - offset).unwrap_or(chunk.len());
            let sent = self
                .start(Method::PATCH, location, Some(token), NO_BODY)
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", at)
                .header("content-type", "application/offset+octet-stream")
                .body(chunk[start..].to_vec())
                .send()
                .await;
            match sent {
                Ok(response) => {
                    let response = success(response).await?;
                    return header(&response, "upload-offset")?
                        .parse()
                        .map_err(|_| ClientError::Decode("a bad Upload-Offset".into()));
                }
                Err(_) if attempts + 1 < CHUNK_ATTEMPTS => {
                    attempts += 1;
                    at = self.upload_status(token, location).await?.offset;
                    if at >= end {
                        return Ok(at);
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// `GET /v1/uploads/{id}`: where an upload stands, and its object once
    /// complete.
    pub async fn upload_status(&self, token: &str, location: &str) -> Result<UploadStatus> {
        self.call(Method::GET, location, Some(token), NO_BODY).await
    }

    /// `POST /v1/media/{media_id}/link`: a signed link to an object the
    /// caller uploaded, or one a message they may see references.
    pub async fn media_link(
        &self,
        token: &str,
        media_id: &str,
        request: &LinkRequest,
    ) -> Result<MediaLink> {
        let path = format!("/v1/media/{media_id}/link");
        self.call(Method::POST, &path, Some(token), Some(request))
            .await
    }

    /// `GET /v1/media/usage`.
    pub async fn media_usage(&self, token: &str) -> Result<MediaUsage> {
        self.call(Method::GET, "/v1/media/usage", Some(token), NO_BODY)
            .await
    }

    /// Fetches a signed link (a path on this server, as
    /// [`media_link`](Self::media_link) answers it) into the file at `to`,
    /// and answers how many bytes were written.
    pub async fn download(&self, link: &str, to: &Path) -> Result<u64> {
        let mut response = success(
            self.start(Method::GET, link, None, NO_BODY)
                .timeout(std::time::Duration::from_secs(3600))
                .send()
                .await?,
        )
        .await?;
        let mut file = tokio::fs::File::create(to).await?;
        let mut written = 0;
        while let Some(bytes) = response.chunk().await? {
            file.write_all(&bytes).await?;
            written += bytes.len() as u64;
        }
        file.flush().await?;
        Ok(written)
    }
}

/// The response, or the server's refusal as [`ClientError::Api`].
async fn success(response: reqwest::Response) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() || status == StatusCode::NO_CONTENT {
        return Ok(response);
    }
    let body = response.bytes().await?;
    Err(api_error(status, &body))
}

fn header(response: &reqwest::Response, name: &str) -> Result<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Decode(format!("no {name} header")))
}
