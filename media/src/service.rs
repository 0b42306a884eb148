//! [`Media`], the operations the edge and other rooms call: tus uploads
//! into staging files, finishing them into content-addressed objects,
//! signed links and the downloads they open, what chat may reference, and
//! the sweep that collects what nothing references.
//!
//! Staging: each upload has one file under the staging dir, named by its
//! id. The store's offset is the truth: a PATCH first cuts the file back to
//! it, appends, syncs, and only then moves the offset, so bytes that were
//! written but not recorded are written again by the resuming client. One
//! request writes an upload at a time (`writing`); another is refused with
//! [`MediaError::UploadBusy`] rather than queued.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};
use superapp_kit::clock::SharedClock;
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use tokio::sync::Semaphore;

use crate::MediaError;
use crate::blobs::{Blobs, ByteStream};
use crate::config::MediaConfig;
use crate::image::{self, ImageError, ImageLimits};
use crate::model::{
    ByteRange, Facts, Link, LinkParams, MediaId, MediaKind, NewUpload, Swept, Upload, UploadId,
    UploadLimits, UploadView, Usage, UserId, Variant,
};
use crate::policy::{self, LinkKey, RangeAnswer, SizeLimits};
use crate::ports::Sight;
use crate::store::MediaStore;

/// Longest referrer key (`m:<conversation>:<seq>` and the like), in bytes.
pub const MAX_REFERRER: usize = 200;

/// What the sweep takes in one write, so that one sweep never holds the
/// store's writer long.
const SWEEP_BATCH: u32 = 100;
/// Batches one sweep takes at most; the rest waits for the next tick.
const SWEEP_ROUNDS: usize = 20;
/// How long a doomed object may wait for the sweeper that doomed it to
/// delete its blobs before another sweep finishes the job: far longer than
/// deleting two blobs takes, so that a late sweeper's delete never follows
/// the re-upload that came after another's.
const DOOMED_LEFT_MS: i64 = 10 * 60_000;

/// The settings the room runs with, from [`MediaConfig`].
#[derive(Debug, Clone)]
struct Settings {
    sizes: SizeLimits,
    uploads: UploadLimits,
    images: ImageLimits,
    upload_ttl_ms: i64,
    link_ttl_ms: i64,
    grace_ms: i64,
}

impl Settings {
    fn of(config: &MediaConfig) -> Self {
        let ms = |secs: u64| (secs.min(i64::MAX as u64 / 1000) * 1000) as i64;
        Self {
            sizes: config.size_limits(),
            uploads: config.upload_limits(),
            images: config.image_limits(),
            upload_ttl_ms: ms(config.upload_ttl_secs),
            link_ttl_ms: ms(config.link_ttl_secs),
            grace_ms: ms(config.grace_secs),
        }
    }
}

/// A download about to be served.
pub struct Download {
    /// The range served, when a single satisfiable one was asked for.
    pub range: Option<ByteRange>,
    /// The object's whole size.
    pub size: u64,
    pub content_type: String,
    /// `inline`, or `attachment; filename*=...`.
    pub disposition: String,
    /// The ETag's value (the media id: content addressed, never changes).
    pub etag: String,
    /// How long the answer may be cached by the client, in seconds.
    pub max_age_secs: u64,
    pub body: ByteStream,
}

/// What `GET /v1/media/usage` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageView {
    pub used_bytes: u64,
    pub quota_bytes: u64,
    pub open_uploads: u32,
}

/// What a link is asked for.
#[derive(Debug, Clone, Default)]
pub struct LinkRequest {
    pub variant: Variant,
    /// The message that references the media, when the caller does not
    /// hold it: granted if they may see that message.
    pub message: Option<(String, u64)>,
    /// The user whose avatar the media is, when the caller names a
    /// profile instead: granted if they are shown that avatar.
    pub profile: Option<UserId>,
}

pub struct Media {
    store: Arc<dyn MediaStore>,
    blobs: Arc<dyn Blobs>,
    sight: Arc<dyn Sight>,
    clock: SharedClock,
    key: LinkKey,
    staging: PathBuf,
    settings: Settings,
    /// Bounds the images processed at once (`media.processing_concurrency`).
    processing: Semaphore,
    /// The uploads a request is writing right now.
    writing: Mutex<HashSet<UploadId>>,
}

/// Holds an upload's place in `writing` until dropped.
struct Writing<'a> {
    media: &'a Media,
    id: UploadId,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.media
            .writing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Media {
    /// The room on `store` and `blobs`, staging uploads under `staging`
    /// (created if missing).
    pub fn new(
        store: Arc<dyn MediaStore>,
        blobs: Arc<dyn Blobs>,
        sight: Arc<dyn Sight>,
        clock: SharedClock,
        key: LinkKey,
        staging: PathBuf,
        config: &MediaConfig,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&staging)?;
        Ok(Self {
            store,
            blobs,
            sight,
            clock,
            key,
            staging,
            settings: Settings::of(config),
            processing: Semaphore::new(config.processing_concurrency.max(1) as usize),
            writing: Mutex::new(HashSet::new()),
        })
    }

    /// The largest upload accepted of any kind (tus' `Tus-Max-Size`).
    pub fn max_size(&self) -> u64 {
        let s = &self.settings.sizes;
        s.image.max(s.voice).max(s.video).max(s.file)
    }

    fn staged(&self, id: &UploadId, suffix: &str) -> PathBuf {
        self.staging.join(format!("{id}{suffix}"))
    }

    fn claim(&self, id: &UploadId) -> Result<Writing<'_>, MediaError> {
        let mut writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        if !writing.insert(id.clone()) {
            return Err(MediaError::UploadBusy);
        }
        Ok(Writing {
            media: self,
            id: id.clone(),
        })
    }

    /// The caller's upload: another user's, an unknown one and an expired
    /// unfinished one are alike unknown.
    async fn own_upload(&self, user: UserId, id: &UploadId) -> Result<Upload, MediaError> {
        let upload = self.store.upload(id).await?;
        match upload {
            Some(u)
                if u.user == user && (u.media.is_some() || self.clock.now_ms() < u.expires_ms) =>
            {
                Ok(u)
            }
            _ => Err(MediaError::UnknownUpload),
        }
    }

    /// Opens an upload (tus creation), checked against its kind's size
    /// limit, the caller's open uploads and quota before a byte is stored;
    /// with `body` (creation-with-upload) its first bytes are appended at
    /// once. An upload of zero bytes finishes at once.
    pub async fn create<S>(
        &self,
        user: UserId,
        new: NewUpload,
        body: Option<S>,
    ) -> Result<UploadView, MediaError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        policy::check_length(&new, &self.settings.sizes)?;
        let now = self.clock.now_ms();
        let upload = Upload {
            id: UploadId::random(),
            user,
            kind: new.kind,
            name: new.name,
            keep_exif: new.keep_exif,
            length: new.length,
            offset: 0,
            created_ms: now,
            expires_ms: now.saturating_add(self.settings.upload_ttl_ms),
            media: None,
        };
        tokio::fs::File::create(self.staged(&upload.id, "")).await?;
        if let Err(e) = self
            .store
            .open_upload(upload.clone(), self.settings.uploads, now)
            .await
        {
            let _ = tokio::fs::remove_file(self.staged(&upload.id, "")).await;
            return Err(e);
        }
        match body {
            Some(body) => self.append(user, &upload.id, 0, body).await,
            None if upload.length == 0 => {
                self.append(user, &upload.id, 0, futures_util::stream::empty())
                    .await
            }
            None => Ok(UploadView {
                upload,
                media: None,
            }),
        }
    }

    /// An upload and, once finished, its object as its owner sees it.
    pub async fn status(&self, user: UserId, id: &UploadId) -> Result<UploadView, MediaError> {
        let upload = self.own_upload(user, id).await?;
        self.view(upload).await
    }

    async fn view(&self, upload: Upload) -> Result<UploadView, MediaError> {
        let media = match &upload.media {
            Some(media_id) => self
                .store
                .object(media_id)
                .await?
                .map(|o| (media_id.clone(), as_declared(upload.kind, o.facts))),
            None => None,
        };
        Ok(UploadView { upload, media })
    }

    /// Appends `body` at `offset` (tus PATCH), which must be the upload's
    /// offset. Bytes past Upload-Length refuse the whole request and none
    /// of it is kept; a body that fails midway keeps what arrived. The last
    /// byte finishes the upload into an object.
    pub async fn append<S>(
        &self,
        user: UserId,
        id: &UploadId,
        offset: u64,
        mut body: S,
    ) -> Result<UploadView, MediaError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        let _writing = self.claim(id)?;
        let upload = self.own_upload(user, id).await?;
        if offset != upload.offset {
            return Err(MediaError::OffsetMismatch {
                offset: upload.offset,
            });
        }
        if upload.media.is_some() {
            // A finished upload takes no more bytes; an empty PATCH at its
            // end answers as the last one did.
            return match body.next().await {
                Some(Ok(bytes)) if !bytes.is_empty() => Err(MediaError::BeyondLength {
                    length: upload.length,
                }),
                _ => self.view(upload).await,
            };
        }
        let path = self.staged(id, "");
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await?;
        // Bytes past the recorded offset were never acknowledged: the
        // client sends them again.
        file.set_len(upload.offset).await?;
        file.seek(std::io::SeekFrom::Start(upload.offset)).await?;
        let room = upload.length - upload.offset;
        let mut received: u64 = 0;
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    if received + bytes.len() as u64 > room {
                        file.set_len(upload.offset).await?;
                        return Err(MediaError::BeyondLength {
                            length: upload.length,
                        });
                    }
                    file.write_all(&bytes).await?;
                    received += bytes.len() as u64;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        file.flush().await?;
        file.sync_data().await?;
        drop(file);
        let reached = upload.offset + received;
        if received > 0 && !self.store.advance(id, upload.offset, reached).await? {
            return Err(MediaError::UnknownUpload);
        }
        if let Some(e) = failure {
            return Err(MediaError::Interrupted {
                offset: reached,
                timed_out: e.kind() == std::io::ErrorKind::TimedOut,
            });
        }
        let upload = Upload {
            offset: reached,
            ..upload
        };
        if reached < upload.length {
            return Ok(UploadView {
                upload,
                media: None,
            });
        }
        let (media_id, facts) = self.finish(&upload).await?;
        Ok(UploadView {
            upload: Upload {
                media: Some(media_id.clone()),
                ..upload
            },
            media: Some((media_id, facts)),
        })
    }

    /// Turns a complete staging file into an object: sniffs it, checks the
    /// declared kind (a mismatch discards the upload), processes images,
    /// hashes what is to be stored, puts it unless the object is already
    /// stored, and records the owner's holding.
    async fn finish(&self, upload: &Upload) -> Result<(MediaId, Facts), MediaError> {
        let staged = self.staged(&upload.id, "");
        let head = read_head(&staged).await?;
        let sniffed = policy::sniff(&head);
        if let Err(e) = policy::check_kind(upload.kind, &sniffed) {
            self.discard(&upload.id).await;
            return Err(e);
        }
        let mut stored_path = staged.clone();
        let (mut width, mut height, mut thumbnail) = (0, 0, None);
        if let (MediaKind::Image, Some(format)) = (upload.kind, sniffed.image) {
            let output = self.staged(&upload.id, ".out");
            let processed = {
                let _permit = self
                    .processing
                    .acquire()
                    .await
                    .map_err(|_| MediaError::Dependency("image processing stopped".into()))?;
                let (input, out, keep, limits) = (
                    staged.clone(),
                    output.clone(),
                    upload.keep_exif,
                    self.settings.images.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    image::process(format, &input, &out, keep, &limits)
                })
                .await
                .map_err(|e| MediaError::Dependency(format!("image processing: {e}")))?
            };
            match processed {
                Ok(p) => {
                    (width, height, thumbnail) = (p.width, p.height, p.thumbnail);
                    stored_path = output;
                }
                Err(e) => {
                    let refusal = match e {
                        ImageError::Unreadable => MediaError::UnreadableImage,
                        ImageError::TooManyPixels { max } => MediaError::ImageTooLarge { max },
                        ImageError::Io(e) => return Err(e.into()),
                    };
                    self.discard(&upload.id).await;
                    return Err(refusal);
                }
            }
        }
        let (media_id, size) = hash_file(&stored_path).await?;
        let facts = Facts {
            kind: sniffed.kind,
            mime: sniffed.mime.to_string(),
            size,
            width,
            height,
            thumbnail: thumbnail.is_some(),
        };
        let now = self.clock.now_ms();
        let stored = self
            .store
            .prepare_object(media_id.clone(), facts.clone(), now)
            .await?;
        if !stored {
            self.blobs
                .put_file(
                    &policy::blob_key(&media_id, Variant::Original),
                    &stored_path,
                )
                .await?;
            if let Some(thumbnail) = &thumbnail {
                let path = self.staged(&upload.id, ".thumb");
                tokio::fs::write(&path, thumbnail).await?;
                self.blobs
                    .put_file(&policy::blob_key(&media_id, Variant::Thumbnail), &path)
                    .await?;
            }
            self.store.mark_stored(media_id.clone()).await?;
        }
        self.store
            .complete_upload(upload.id.clone(), media_id.clone(), now)
            .await?;
        self.remove_staged(&upload.id).await;
        tracing::debug!(media = %media_id, size, put = !stored, "upload finished");
        let object = self.store.object(&media_id).await?;
        let facts = object.map(|o| o.facts).unwrap_or(facts);
        Ok((media_id, as_declared(upload.kind, facts)))
    }

    async fn remove_staged(&self, id: &UploadId) {
        for suffix in ["", ".out", ".thumb"] {
            let _ = tokio::fs::remove_file(self.staged(id, suffix)).await;
        }
    }

    /// Drops an upload and its staging files (best effort: the sweep
    /// removes what is left when the upload expires).
    async fn discard(&self, id: &UploadId) {
        self.remove_staged(id).await;
        if let Err(e) = self.store.discard_upload(id).await {
            tracing::warn!(error = %e, "discarding an upload failed; the sweep will");
        }
    }

    /// Cancels an upload (tus termination); a finished one's row goes, its
    /// object stays held.
    pub async fn cancel(&self, user: UserId, id: &UploadId) -> Result<(), MediaError> {
        let _writing = self.claim(id)?;
        self.own_upload(user, id).await?;
        self.remove_staged(id).await;
        self.store.discard_upload(id).await
    }

    /// The caller's usage against their quota.
    pub async fn usage(&self, user: UserId) -> Result<UsageView, MediaError> {
        let Usage {
            used_bytes,
            open_uploads,
            ..
        } = self.store.usage(user, self.clock.now_ms()).await?;
        Ok(UsageView {
            used_bytes,
            quota_bytes: self.settings.uploads.quota_bytes,
            open_uploads,
        })
    }

    /// A signed link to an object: for a holder, or for someone who may
    /// see a message that references it (who may then reference it too).
    /// Anyone else is told the media does not exist.
    pub async fn link(
        &self,
        user: UserId,
        media_id: &MediaId,
        request: LinkRequest,
    ) -> Result<Link, MediaError> {
        let object = match self.store.object(media_id).await? {
            Some(object) if object.stored => object,
            _ => return Err(MediaError::MediaNotFound),
        };
        let name = match self.store.holding(user, media_id).await? {
            Some(holding) => {
                let download =
                    holding.kind == MediaKind::File || object.facts.kind == MediaKind::File;
                download.then_some(holding.name).flatten()
            }
            None => {
                let referenced = match (&request.message, request.profile) {
                    (Some((conversation, seq)), _) => self
                        .sight
                        .message_media(user, conversation, *seq)
                        .await
                        .map_err(MediaError::Dependency)?
                        .unwrap_or_default(),
                    (None, Some(owner)) => (self.sight.profile_media(user, owner).await)
                        .map_err(MediaError::Dependency)?
                        .map(|id| vec![(id, None)])
                        .unwrap_or_default(),
                    (None, None) => return Err(MediaError::MediaNotFound),
                };
                let Some((_, name)) = referenced
                    .into_iter()
                    .find(|(id, _)| id == media_id.as_str())
                else {
                    return Err(MediaError::MediaNotFound);
                };
                self.store
                    .grant_access(user, media_id.clone(), self.clock.now_ms())
                    .await?;
                name.as_deref().and_then(policy::sanitize_name)
            }
        };
        if request.variant == Variant::Thumbnail && !object.facts.thumbnail {
            return Err(MediaError::MediaNotFound);
        }
        let params = LinkParams {
            media_id: media_id.clone(),
            variant: request.variant,
            name: match request.variant {
                Variant::Original => name,
                Variant::Thumbnail => None,
            },
            exp_ms: self
                .clock
                .now_ms()
                .saturating_add(self.settings.link_ttl_ms),
        };
        Ok(Link {
            url: policy::link_url(&self.key, &params),
            expires_ms: params.exp_ms,
        })
    }

    /// Opens a download by a signed link: its signature, then its expiry,
    /// then the object and the one range asked for.
    pub async fn open(
        &self,
        params: LinkParams,
        sig: &str,
        range: Option<&str>,
    ) -> Result<Download, MediaError> {
        policy::check_link(&self.key, &params, sig, self.clock.now_ms())?;
        let object = match self.store.object(&params.media_id).await? {
            Some(object) if object.stored => object,
            _ => return Err(MediaError::MediaNotFound),
        };
        let key = policy::blob_key(&params.media_id, params.variant);
        let size = match params.variant {
            Variant::Original => object.facts.size,
            Variant::Thumbnail => self
                .blobs
                .size(&key)
                .await?
                .ok_or(MediaError::MediaNotFound)?,
        };
        let range = match policy::parse_range(range, size) {
            RangeAnswer::Full => None,
            RangeAnswer::Partial(range) => Some(range),
            RangeAnswer::Unsatisfiable => return Err(MediaError::RangeNotSatisfiable { size }),
        };
        let bytes = range.map_or(0..size, |r| r.first..r.last + 1);
        let body = self.blobs.read(&key, bytes).await.map_err(|e| match e {
            crate::blobs::BlobError::NotFound => MediaError::MediaNotFound,
            e => e.into(),
        })?;
        let (content_type, disposition) = match (params.variant, &params.name) {
            (Variant::Thumbnail, _) => ("image/jpeg".to_string(), "inline".to_string()),
            (Variant::Original, Some(name)) => {
                (policy::OCTET_STREAM.to_string(), policy::attachment(name))
            }
            (Variant::Original, None) if object.facts.kind != MediaKind::File => {
                (object.facts.mime.clone(), "inline".to_string())
            }
            (Variant::Original, None) => (
                policy::OCTET_STREAM.to_string(),
                policy::attachment(params.media_id.as_str()),
            ),
        };
        Ok(Download {
            range,
            size,
            content_type,
            disposition,
            etag: params.media_id.to_string(),
            max_age_secs: (self.settings.link_ttl_ms / 1000) as u64,
            body,
        })
    }

    /// For each id, its facts when `user` may reference it in a message
    /// (they hold it, or were granted a link to it through a message they
    /// may see); None otherwise.
    pub async fn usable(
        &self,
        user: UserId,
        ids: &[MediaId],
    ) -> Result<Vec<Option<Facts>>, MediaError> {
        self.store.usable(user, ids.to_vec()).await
    }

    /// Records that `referrer` (e.g. `m:<conversation_id>:<seq>`)
    /// references `ids`, which keeps them from collection.
    pub async fn attach(&self, ids: &[MediaId], referrer: &str) -> Result<(), MediaError> {
        check_referrer(referrer)?;
        if ids.is_empty() {
            return Ok(());
        }
        self.store.attach(ids.to_vec(), referrer.to_string()).await
    }

    /// Drops `referrer`'s references: what nothing else references is
    /// collected after the grace period.
    pub async fn detach(&self, referrer: &str) -> Result<(), MediaError> {
        check_referrer(referrer)?;
        self.store.detach(referrer.to_string()).await
    }

    /// Collects objects nothing references whose grace period has ended
    /// (their blobs, thumbnails and holdings), and removes expired uploads
    /// with their staging files. Safe on several nodes at once: each object
    /// is claimed by the write that dooms it.
    pub async fn sweep(&self) -> Result<Swept, MediaError> {
        let mut swept = Swept::default();
        for _ in 0..SWEEP_ROUNDS {
            let now = self.clock.now_ms();
            let doomed = self
                .store
                .doom(now, self.settings.grace_ms, SWEEP_BATCH)
                .await?;
            for (media_id, _) in &doomed {
                self.delete_blobs(media_id.clone()).await?;
                swept.objects += 1;
            }
            if doomed.len() < SWEEP_BATCH as usize {
                break;
            }
        }
        for media_id in self
            .store
            .doomed(SWEEP_BATCH, self.clock.now_ms() - DOOMED_LEFT_MS)
            .await?
        {
            self.delete_blobs(media_id).await?;
        }
        for upload in self
            .store
            .expired_uploads(self.clock.now_ms(), SWEEP_BATCH)
            .await?
        {
            // An upload being written is left for the next sweep.
            let Ok(_writing) = self.claim(&upload.id) else {
                continue;
            };
            self.remove_staged(&upload.id).await;
            self.store.discard_upload(&upload.id).await?;
            swept.uploads += 1;
        }
        if swept != Swept::default() {
            tracing::info!(
                objects = swept.objects,
                uploads = swept.uploads,
                "media sweep"
            );
        }
        Ok(swept)
    }

    async fn delete_blobs(&self, media_id: MediaId) -> Result<(), MediaError> {
        for variant in [Variant::Original, Variant::Thumbnail] {
            self.blobs
                .delete(&policy::blob_key(&media_id, variant))
                .await?;
        }
        self.store.forget_doomed(media_id).await
    }
}

/// An object's facts as an upload declared it: a file is served as a
/// download, whatever its bytes.
fn as_declared(declared: MediaKind, facts: Facts) -> Facts {
    match declared {
        MediaKind::File => Facts {
            kind: MediaKind::File,
            mime: policy::OCTET_STREAM.to_string(),
            ..facts
        },
        _ => facts,
    }
}

fn check_referrer(referrer: &str) -> Result<(), MediaError> {
    if referrer.is_empty() || referrer.len() > MAX_REFERRER {
        return Err(MediaError::InvalidReferrer);
    }
    Ok(())
}

/// The first [`policy::SNIFF_LEN`] bytes of a file (fewer if it is shorter).
async fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path).await?;
    let mut head = Vec::with_capacity(policy::SNIFF_LEN);
    file.take(policy::SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .await?;
    Ok(head)
}

/// The SHA-256 and size of a file, read in chunks on the blocking pool.
async fn hash_file(path: &Path) -> std::io::Result<(MediaId, u64)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((MediaId::from_digest(&hasher.finalize().into()), size))
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::blobs::ObjectStoreBlobs;
    use crate::store::SqliteMediaStore;
    use superapp_kit::BoxFuture;
    use superapp_kit::clock::ManualClock;

    /// A message `d.1.2` seq 1 that user 2 may see, referencing `shown`.
    struct OneMessage {
        shown: String,
    }

    impl Sight for OneMessage {
        fn message_media(
            &self,
            viewer: UserId,
            conversation_id: &str,
            seq: u64,
        ) -> BoxFuture<'_, Result<crate::ports::MessageMedia, String>> {
            let visible = viewer == UserId(2) && conversation_id == "d.1.2" && seq == 1;
            let media = vec![(self.shown.clone(), Some("report.pdf".to_string()))];
            Box::pin(async move { Ok(visible.then_some(media)) })
        }
    }

    struct Room {
        media: Media,
        clock: Arc<ManualClock>,
        _dir: tempfile::TempDir,
    }

    fn room(shown: &str, config: MediaConfig) -> Room {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let media = Media::new(
            Arc::new(SqliteMediaStore::open(&dir.path().join("media.db"), None).unwrap()),
            Arc::new(ObjectStoreBlobs::filesystem(&dir.path().join("blobs")).unwrap()),
            Arc::new(OneMessage {
                shown: shown.into(),
            }),
            clock.clone(),
            LinkKey::new([3; 32]),
            dir.path().join("staging"),
            &config,
        )
        .unwrap();
        Room {
            media,
            clock,
            _dir: dir,
        }
    }

    fn bytes(
        b: &'static [u8],
    ) -> futures_util::stream::Iter<std::vec::IntoIter<Result<Bytes, std::io::Error>>> {
        futures_util::stream::iter(vec![Ok(Bytes::from_static(b))])
    }

    async fn upload(media: &Media, user: u64, content: &'static [u8]) -> MediaId {
        let new = NewUpload {
            kind: MediaKind::File,
            name: Some("mine.pdf".into()),
            keep_exif: false,
            length: content.len() as u64,
        };
        let view = media
            .create(UserId(user), new, Some(bytes(content)))
            .await
            .unwrap();
        view.media.unwrap().0
    }

    #[tokio::test]
    async fn a_message_someone_may_see_grants_a_link_and_the_right_to_forward() {
        let content: &'static [u8] = b"%PDF-1.7 the report";
        let shown = {
            let digest: [u8; 32] = Sha256::digest(content).into();
            MediaId::from_digest(&digest)
        };
        let room = room(shown.as_str(), MediaConfig::default());
        let media_id = upload(&room.media, 1, content).await;
        assert_eq!(media_id, shown);
        // Before seeing the message, user 2 may neither link nor reference it.
        assert_eq!(
            room.media
                .usable(UserId(2), std::slice::from_ref(&shown))
                .await
                .unwrap(),
            vec![None]
        );
        let refused = room
            .media
            .link(UserId(2), &shown, LinkRequest::default())
            .await;
        assert!(matches!(refused, Err(MediaError::MediaNotFound)));
        let elsewhere = LinkRequest {
            message: Some(("d.1.3".into(), 1)),
            ..LinkRequest::default()
        };
        let refused = room.media.link(UserId(2), &shown, elsewhere).await;
        assert!(matches!(refused, Err(MediaError::MediaNotFound)));
        // Through the message they see, the link names its file.
        let through = LinkRequest {
            message: Some(("d.1.2".into(), 1)),
            ..LinkRequest::default()
        };
        let link = room
            .media
            .link(UserId(2), &shown, through.clone())
            .await
            .unwrap();
        assert!(link.url.contains("name=report.pdf"), "{}", link.url);
        // Someone else naming the same message is refused.
        let refused = room.media.link(UserId(3), &shown, through).await;
        assert!(matches!(refused, Err(MediaError::MediaNotFound)));
        // And from then on user 2 may reference it in their own messages.
        let usable = room
            .media
            .usable(UserId(2), std::slice::from_ref(&shown))
            .await
            .unwrap();
        assert_eq!(usable[0].as_ref().unwrap().size, content.len() as u64);
        assert_eq!(
            room.media.usable(UserId(3), &[shown]).await.unwrap(),
            vec![None]
        );
    }

    #[tokio::test]
    async fn referenced_media_outlives_the_grace_and_goes_once_detached() {
        let config = MediaConfig {
            grace_secs: 60,
            ..MediaConfig::default()
        };
        let room = room("", config);
        let kept = upload(&room.media, 1, b"kept by a message").await;
        let dropped = upload(&room.media, 1, b"never sent").await;
        room.media
            .attach(std::slice::from_ref(&kept), "m:d.1.2:7")
            .await
            .unwrap();
        // Within the grace nothing goes.
        assert_eq!(room.media.sweep().await.unwrap().objects, 0);
        room.clock.advance_ms(60_000);
        assert_eq!(room.media.sweep().await.unwrap().objects, 1);
        assert_eq!(
            room.media
                .usable(UserId(1), &[dropped.clone(), kept.clone()])
                .await
                .unwrap()[0],
            None
        );
        assert!(
            room.media
                .link(UserId(1), &kept, LinkRequest::default())
                .await
                .is_ok()
        );
        room.media.detach("m:d.1.2:7").await.unwrap();
        assert_eq!(room.media.sweep().await.unwrap().objects, 1);
        assert_eq!(room.media.usage(UserId(1)).await.unwrap().used_bytes, 0);
        assert!(matches!(
            room.media.attach(&[kept], "").await,
            Err(MediaError::InvalidReferrer)
        ));
    }

    #[tokio::test]
    async fn an_upload_left_unfinished_is_swept_with_its_staging_file_when_it_expires() {
        let room = room("", MediaConfig::default());
        let new = NewUpload {
            kind: MediaKind::Video,
            name: None,
            keep_exif: false,
            length: 100,
        };
        let view = room
            .media
            .create(UserId(1), new, Some(bytes(b"\0\0\0\x18ftypisom")))
            .await
            .unwrap();
        let staged = room.media.staged(&view.upload.id, "");
        assert!(staged.exists());
        assert_eq!(room.media.sweep().await.unwrap().uploads, 0);
        room.clock.advance_ms(24 * 3_600_000);
        assert_eq!(room.media.sweep().await.unwrap().uploads, 1);
        assert!(!staged.exists());
        assert!(matches!(
            room.media.status(UserId(1), &view.upload.id).await,
            Err(MediaError::UnknownUpload)
        ));
    }
}
