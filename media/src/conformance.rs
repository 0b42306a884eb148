//! The behaviour every media store backend and every blob store must show,
//! through the traits alone. SQLite and the filesystem run it in this
//! crate's tests, and S3 against a local S3-compatible server when one is
//! installed; another backend runs it by enabling the `conformance` feature
//! and calling these functions on a fresh, empty store of its own.
//!
//! - [`uploads`]: opening within the quota and the open-upload cap,
//!   offsets moved by compare-and-set, expiry, discarding.
//! - [`racing_uploads_respect_the_quota`]: creations racing for the last of
//!   a quota: exactly those that fit pass.
//! - [`objects`]: objects recorded once, holdings counted once per user,
//!   what a user may reference.
//! - [`collection`]: what is referenced or recent stays; the rest is doomed
//!   once, refuses new uploads while doomed, and frees its holders' quota.
//! - [`blobs`]: put (small and in parts), size, ranges, delete.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures_util::StreamExt as _;

use crate::MediaError;
use crate::blobs::{BlobError, Blobs};
use crate::model::{Facts, MediaId, MediaKind, Upload, UploadId, UploadLimits, UserId};
use crate::store::MediaStore;

const LIMITS: UploadLimits = UploadLimits {
    quota_bytes: 1_000,
    max_open_uploads: 3,
};

fn upload(user: u64, length: u64, now: i64) -> Upload {
    Upload {
        id: UploadId::random(),
        user: UserId(user),
        kind: MediaKind::Image,
        name: Some("a.png".into()),
        keep_exif: false,
        length,
        offset: 0,
        created_ms: now,
        expires_ms: now + 1_000,
        media: None,
    }
}

fn facts(size: u64) -> Facts {
    Facts {
        kind: MediaKind::Image,
        mime: "image/png".into(),
        size,
        width: 3,
        height: 2,
        thumbnail: true,
    }
}

fn id(n: u8) -> MediaId {
    MediaId::from_digest(&[n; 32])
}

/// Records an upload of `media` by `user` as finished.
async fn hold(store: &dyn MediaStore, user: u64, media: &MediaId, size: u64, now: i64) -> Upload {
    let u = upload(user, size, now);
    store.open_upload(u.clone(), LIMITS, now).await.unwrap();
    if !store
        .prepare_object(media.clone(), facts(size), now)
        .await
        .unwrap()
    {
        store.mark_stored(media.clone()).await.unwrap();
    }
    store
        .complete_upload(u.id.clone(), media.clone(), now)
        .await
        .unwrap();
    u
}

pub async fn uploads(store: &dyn MediaStore) {
    let now = 10_000;
    let first = upload(1, 400, now);
    store.open_upload(first.clone(), LIMITS, now).await.unwrap();
    assert_eq!(store.upload(&first.id).await.unwrap(), Some(first.clone()));
    let usage = store.usage(UserId(1), now).await.unwrap();
    assert_eq!(
        (usage.used_bytes, usage.reserved_bytes, usage.open_uploads),
        (0, 400, 1)
    );
    // The quota counts what open uploads reserve.
    let refused = store.open_upload(upload(1, 601, now), LIMITS, now).await;
    assert!(matches!(refused, Err(MediaError::QuotaExceeded { .. })));
    store
        .open_upload(upload(1, 300, now), LIMITS, now)
        .await
        .unwrap();
    store
        .open_upload(upload(1, 300, now), LIMITS, now)
        .await
        .unwrap();
    let refused = store.open_upload(upload(1, 0, now), LIMITS, now).await;
    assert!(matches!(
        refused,
        Err(MediaError::TooManyUploads { max: 3 })
    ));
    // Another user's quota is their own.
    store
        .open_upload(upload(2, 1_000, now), LIMITS, now)
        .await
        .unwrap();
    // Offsets move by compare-and-set only.
    assert!(store.advance(&first.id, 0, 100).await.unwrap());
    assert!(!store.advance(&first.id, 0, 200).await.unwrap());
    assert_eq!(store.upload(&first.id).await.unwrap().unwrap().offset, 100);
    // Expired uploads no longer count, and the sweep finds them.
    let later = now + 1_000;
    assert_eq!(store.usage(UserId(1), later).await.unwrap().open_uploads, 0);
    let expired = store.expired_uploads(later, 10).await.unwrap();
    assert_eq!(expired.len(), 4);
    assert!(store.expired_uploads(now, 10).await.unwrap().is_empty());
    store.discard_upload(&first.id).await.unwrap();
    assert_eq!(store.upload(&first.id).await.unwrap(), None);
    assert!(!store.advance(&first.id, 100, 200).await.unwrap());
}

pub async fn racing_uploads_respect_the_quota(store: Arc<dyn MediaStore>) {
    let limits = UploadLimits {
        quota_bytes: 1_000,
        max_open_uploads: 100,
    };
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.open_upload(upload(7, 100, 0), limits, 0).await
        }));
    }
    let mut passed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => passed += 1,
            Err(MediaError::QuotaExceeded { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(passed, 10);
}

pub async fn objects(store: &dyn MediaStore) {
    let now = 50_000;
    let media = id(1);
    assert!(store.object(&media).await.unwrap().is_none());
    // The first upload puts the blob; the object is known before it is stored.
    assert!(
        !store
            .prepare_object(media.clone(), facts(10), now)
            .await
            .unwrap()
    );
    let object = store.object(&media).await.unwrap().unwrap();
    assert!(!object.stored);
    assert_eq!(object.facts, facts(10));
    store.mark_stored(media.clone()).await.unwrap();
    assert!(
        store
            .prepare_object(media.clone(), facts(10), now + 5)
            .await
            .unwrap()
    );
    assert_eq!(
        store.object(&media).await.unwrap().unwrap().last_upload_ms,
        now + 5
    );
    // One user holding the same content twice uses its size once.
    hold(store, 1, &media, 10, now).await;
    hold(store, 1, &media, 10, now + 1).await;
    let usage = store.usage(UserId(1), now).await.unwrap();
    assert_eq!((usage.used_bytes, usage.open_uploads), (10, 0));
    let holding = store.holding(UserId(1), &media).await.unwrap().unwrap();
    assert_eq!(
        (holding.kind, holding.size, holding.held_ms),
        (MediaKind::Image, 10, now + 1)
    );
    // A holding counts for its holder alone.
    assert!(store.holding(UserId(2), &media).await.unwrap().is_none());
    let other = id(2);
    let usable = store
        .usable(UserId(2), vec![media.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(usable, vec![None, None]);
    store
        .grant_access(UserId(2), media.clone(), now)
        .await
        .unwrap();
    store
        .grant_access(UserId(2), media.clone(), now)
        .await
        .unwrap();
    let usable = store
        .usable(UserId(2), vec![media.clone(), other])
        .await
        .unwrap();
    assert_eq!(usable, vec![Some(facts(10)), None]);
    // Held as a file, it is a file to its holder.
    let file = id(3);
    let u = Upload {
        kind: MediaKind::File,
        ..upload(3, 10, now)
    };
    store.open_upload(u.clone(), LIMITS, now).await.unwrap();
    store
        .prepare_object(file.clone(), facts(10), now)
        .await
        .unwrap();
    // Not yet stored: nobody may reference it.
    store
        .complete_upload(u.id.clone(), file.clone(), now)
        .await
        .unwrap();
    assert_eq!(
        store.usable(UserId(3), vec![file.clone()]).await.unwrap(),
        vec![None]
    );
    store.mark_stored(file.clone()).await.unwrap();
    let usable = store.usable(UserId(3), vec![file]).await.unwrap();
    let seen = usable[0].clone().unwrap();
    assert_eq!(
        (seen.kind, seen.mime.as_str()),
        (MediaKind::File, "application/octet-stream")
    );
    let finished = store.upload(&u.id).await.unwrap().unwrap();
    assert_eq!(finished.offset, finished.length);
    assert!(finished.media.is_some());
}

pub async fn collection(store: &dyn MediaStore) {
    let grace = 1_000;
    let (kept, referenced, recent) = (id(10), id(11), id(12));
    hold(store, 1, &kept, 100, 0).await;
    hold(store, 1, &referenced, 100, 0).await;
    hold(store, 2, &referenced, 100, 0).await;
    store
        .attach(vec![referenced.clone()], "m:d.1.2:1".into())
        .await
        .unwrap();
    store
        .attach(vec![referenced.clone()], "m:d.1.2:1".into())
        .await
        .unwrap();
    hold(store, 1, &recent, 100, 900).await;
    store
        .grant_access(UserId(3), kept.clone(), 0)
        .await
        .unwrap();
    let doomed = store.doom(1_000, grace, 10).await.unwrap();
    assert_eq!(doomed, vec![(kept.clone(), true)]);
    // Doomed once: a second sweep finds nothing more.
    assert!(store.doom(1_000, grace, 10).await.unwrap().is_empty());
    assert!(store.object(&kept).await.unwrap().is_none());
    assert!(store.holding(UserId(1), &kept).await.unwrap().is_none());
    assert_eq!(
        store.usable(UserId(3), vec![kept.clone()]).await.unwrap(),
        vec![None]
    );
    assert_eq!(store.usage(UserId(1), 1_000).await.unwrap().used_bytes, 200);
    // While doomed, an upload of the same bytes waits.
    let again = store.prepare_object(kept.clone(), facts(100), 1_000).await;
    assert!(matches!(again, Err(MediaError::Collecting)));
    assert_eq!(store.doomed(10, 1_001).await.unwrap(), vec![kept.clone()]);
    assert!(store.doomed(10, 1_000).await.unwrap().is_empty());
    store.forget_doomed(kept.clone()).await.unwrap();
    assert!(store.doomed(10, i64::MAX).await.unwrap().is_empty());
    assert!(
        !store
            .prepare_object(kept.clone(), facts(100), 1_000)
            .await
            .unwrap()
    );
    // Once nothing references it, it goes too.
    store.detach("m:d.1.2:1".into()).await.unwrap();
    let doomed = store.doom(2_000, grace, 10).await.unwrap();
    let ids: Vec<MediaId> = doomed.into_iter().map(|(m, _)| m).collect();
    assert!(
        ids.contains(&referenced) && ids.contains(&recent),
        "{ids:?}"
    );
    assert_eq!(store.usage(UserId(2), 2_000).await.unwrap().used_bytes, 0);
}

async fn collect(stream: crate::blobs::ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

pub async fn blobs(blobs: &dyn Blobs) {
    let dir = tempfile::tempdir().unwrap();
    let small: Vec<u8> = (0..1_000u32).map(|i| (i % 251) as u8).collect();
    // Larger than any implementation's chunk: put in parts.
    let large: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 253) as u8).collect();
    let (small_path, large_path) = (dir.path().join("small"), dir.path().join("large"));
    std::fs::write(&small_path, &small).unwrap();
    std::fs::write(&large_path, &large).unwrap();
    assert_eq!(blobs.size("o/ab/small").await.unwrap(), None);
    assert!(!blobs.exists("o/ab/small").await.unwrap());
    blobs.put_file("o/ab/small", &small_path).await.unwrap();
    blobs.put_file("o/cd/large", &large_path).await.unwrap();
    assert!(blobs.exists("o/ab/small").await.unwrap());
    assert_eq!(blobs.size("o/ab/small").await.unwrap(), Some(1_000));
    assert_eq!(blobs.size("o/cd/large").await.unwrap(), Some(9 << 20));
    let whole = collect(blobs.read("o/ab/small", 0..1_000).await.unwrap()).await;
    assert_eq!(whole, small);
    let part = collect(blobs.read("o/ab/small", 10..20).await.unwrap()).await;
    assert_eq!(part, small[10..20]);
    let tail = collect(
        blobs
            .read("o/cd/large", (9 << 20) - 5..9 << 20)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tail, large[large.len() - 5..]);
    let whole = collect(blobs.read("o/cd/large", 0..9 << 20).await.unwrap()).await;
    assert!(whole == large, "the large blob reads back as it was put");
    // Putting the same bytes again changes nothing (a put may have moved
    // the file it was given: write it anew).
    std::fs::write(&small_path, &small).unwrap();
    blobs.put_file("o/ab/small", &small_path).await.unwrap();
    assert_eq!(blobs.size("o/ab/small").await.unwrap(), Some(1_000));
    assert!(matches!(
        blobs.read("o/ef/missing", 0..1).await,
        Err(BlobError::NotFound)
    ));
    blobs.delete("o/ab/small").await.unwrap();
    blobs.delete("o/ab/small").await.unwrap();
    assert!(!blobs.exists("o/ab/small").await.unwrap());
    blobs.delete("o/cd/large").await.unwrap();
}
