//! The object-store port: where the bytes of objects and thumbnails live,
//! under keys the room derives from media ids ([`crate::policy::blob_key`]).
//! [`Blobs`] speaks the room's terms and names no engine;
//! [`ObjectStoreBlobs`] implements it on the `object_store` crate, over the
//! local filesystem (the embedded default) or any S3-compatible server.
//!
//! Memory stays bounded whatever the size of an object: a put to S3 reads
//! the staged file in chunks ([`ObjectStoreBlobs::chunk`] at a time, a few
//! in flight), and a read is a stream of chunks. A put is atomic: the
//! filesystem renames the staged file into place (staging and blobs share
//! the data dir's filesystem; across filesystems it writes a temporary file
//! and renames that), S3 completes a multipart upload; a reader never sees
//! half an object. On the filesystem a read streams the file itself in
//! [`READ_CHUNK`]s: `object_store`'s own stream reads 8 KiB at a time, a
//! hop to a blocking thread each.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectStore, PutPayload, WriteMultipart,
};
use superapp_kit::BoxFuture;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::config::S3Config;

/// The bytes of a read, chunk by chunk.
pub type ByteStream = BoxStream<'static, Result<Bytes, BlobError>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no such blob")]
    NotFound,
    #[error("{engine}: {source}")]
    Backend {
        engine: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("reading the staged file: {0}")]
    Io(#[from] std::io::Error),
}

/// Where objects' bytes are kept.
pub trait Blobs: Send + Sync + 'static {
    /// Stores the file at `path` under `key`, replacing what was there (the
    /// room puts only content-addressed bytes, so a replacement is the same
    /// bytes). Readers see the old object or the new, never a mix. The file
    /// may be moved into place rather than copied: the caller is done with
    /// it.
    fn put_file<'a>(&'a self, key: &'a str, path: &'a Path)
    -> BoxFuture<'a, Result<(), BlobError>>;
    /// The size of the blob under `key`, or None when there is none.
    fn size<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, BlobError>>;
    /// Whether a blob exists under `key`.
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, BlobError>> {
        Box::pin(async move { Ok(self.size(key).await?.is_some()) })
    }
    /// The bytes `range` (end exclusive, within the blob) of `key`, as a stream.
    fn read<'a>(
        &'a self,
        key: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<ByteStream, BlobError>>;
    /// Deletes the blob under `key`; deleting what is not there succeeds.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>>;
}

/// [`Blobs`] on an `object_store` backend.
pub struct ObjectStoreBlobs {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is the filesystem, for the moves and reads
    /// that need no copy through memory.
    local: Option<Arc<LocalFileSystem>>,
    engine: &'static str,
    /// The bytes read from a staged file at a time; a file no larger is put
    /// in one request, a larger one as parts of this size (S3 wants parts
    /// of 5 MiB at least).
    chunk: usize,
}

/// Parts in flight at once while a large file is put.
const PARTS_IN_FLIGHT: usize = 4;

/// The bytes a filesystem read hands on at a time.
pub const READ_CHUNK: u64 = 256 << 10;

impl ObjectStoreBlobs {
    /// Blobs as files under `dir` (created if missing).
    pub fn filesystem(dir: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir)?;
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir).map_err(backend("filesystem"))?);
        Ok(Self {
            local: Some(store.clone()),
            store,
            engine: "filesystem",
            chunk: 1 << 20,
        })
    }

    /// Blobs in the S3 bucket `config` names.
    pub fn s3(config: &S3Config) -> Result<Self, BlobError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(config.secret_access_key.expose())
            .with_allow_http(config.allow_http);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder.build().map_err(backend("s3"))?;
        Ok(Self {
            local: None,
            store: Arc::new(store),
            engine: "s3",
            chunk: 8 << 20,
        })
    }

    fn fail(&self) -> impl Fn(object_store::Error) -> BlobError + '_ {
        move |e| match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound,
            e => BlobError::Backend {
                engine: self.engine,
                source: Box::new(e),
            },
        }
    }

    async fn put(&self, key: &str, path: &Path) -> Result<(), BlobError> {
        let key = Key::from(key);
        if let Some(local) = &self.local {
            let into = local.path_to_filesystem(&key).map_err(self.fail())?;
            if let Some(dir) = into.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            // A rename is atomic, and moves no byte. It fails across
            // filesystems (a staging dir configured elsewhere): then copy.
            if tokio::fs::rename(path, &into).await.is_ok() {
                return Ok(());
            }
        }
        let mut file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        if len <= self.chunk as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes).await?;
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(self.fail())?;
            return Ok(());
        }
        let upload = self.store.put_multipart(&key).await.map_err(self.fail())?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.chunk);
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e.into());
                }
            };
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(self.fail()(e));
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(self.fail())?;
        Ok(())
    }
}

/// The bytes `range` of an open file, [`READ_CHUNK`] at a time.
async fn file_stream(file: std::fs::File, range: Range<u64>) -> Result<ByteStream, BlobError> {
    let mut file = tokio::fs::File::from_std(file);
    file.seek(std::io::SeekFrom::Start(range.start)).await?;
    let chunks = futures_util::stream::try_unfold(
        (file, range.end - range.start),
        |(mut file, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let mut chunk = vec![0; left.min(READ_CHUNK) as usize];
            // A blob cut short under the reader ends the stream in an error.
            file.read_exact(&mut chunk).await?;
            let left = left - chunk.len() as u64;
            Ok(Some((Bytes::from(chunk), (file, left))))
        },
    );
    Ok(chunks.boxed())
}

fn backend(engine: &'static str) -> impl Fn(object_store::Error) -> BlobError {
    move |e| BlobError::Backend {
        engine,
        source: Box::new(e),
    }
}

impl Blobs for ObjectStoreBlobs {
    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
    ) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(self.put(key, path))
    }

    fn size<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, BlobError>> {
        Box::pin(async move {
            match self.store.head(&Key::from(key)).await {
                Ok(meta) => Ok(Some(meta.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.fail()(e)),
            }
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<ByteStream, BlobError>> {
        Box::pin(async move {
            if range.is_empty() {
                return Ok(futures_util::stream::empty().boxed());
            }
            let options = GetOptions {
                range: Some(GetRange::Bounded(range)),
                ..GetOptions::default()
            };
            let result = self
                .store
                .get_opts(&Key::from(key), options)
                .await
                .map_err(self.fail())?;
            let engine = self.engine;
            match result.payload {
                GetResultPayload::File(file, _) => file_stream(file, result.range).await,
                GetResultPayload::Stream(stream) => Ok(stream
                    .map(move |chunk| {
                        chunk.map_err(|e| BlobError::Backend {
                            engine,
                            source: Box::new(e),
                        })
                    })
                    .boxed()),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            match self.store.delete(&Key::from(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.fail()(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::conformance;

    #[tokio::test]
    async fn the_filesystem_keeps_blobs_as_the_contract_says() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ObjectStoreBlobs::filesystem(&dir.path().join("blobs")).unwrap();
        conformance::blobs(&blobs).await;
    }

    /// A moto S3 server on a free port, stopped when dropped.
    struct Moto {
        child: std::process::Child,
        port: u16,
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts `moto_server`, or None when it is not installed and the
    /// environment does not require it (`TESTKIT_REQUIRE_S3=1`).
    async fn moto() -> Option<Moto> {
        let required = std::env::var("TESTKIT_REQUIRE_S3").is_ok_and(|v| v == "1");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if !required => {
                eprintln!("moto_server not started ({e}); the S3 conformance test is skipped");
                return None;
            }
            Err(e) => panic!("TESTKIT_REQUIRE_S3=1 but moto_server does not start: {e}"),
        };
        let moto = Moto { child, port };
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(moto);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("moto_server did not listen on port {port}");
    }

    /// Creates a bucket on moto, which takes an unsigned request.
    async fn create_bucket(port: u16, bucket: &str) {
        use tokio::io::AsyncWriteExt as _;
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn an_s3_compatible_server_keeps_blobs_as_the_contract_says() {
        let Some(moto) = moto().await else {
            return;
        };
        create_bucket(moto.port, "media").await;
        let config = S3Config {
            bucket: "media".into(),
            endpoint: Some(format!("http://127.0.0.1:{}", moto.port)),
            region: "us-east-1".into(),
            access_key_id: "test".into(),
            secret_access_key: superapp_kit::secret::Secret::new("test".into()),
            allow_http: true,
        };
        let blobs = ObjectStoreBlobs::s3(&config).unwrap();
        conformance::blobs(&blobs).await;
    }
}
