//! Media: tus uploads of every kind against a real server and real files,
//! kinds that lie, sizes past their limits, uploads cut short and resumed,
//! dedupe, the quota, signed links and what they refuse, byte ranges, the
//! headers that keep user content off this origin, and collection.

use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::helpers::{
    TestApp, User, manual_clock, spawn_app, spawn_app_with, spawn_app_with_clock,
};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Tiny valid files of each kind.
pub(crate) fn png() -> Vec<u8> {
    unb64(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    )
}

pub(crate) fn samples() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let jpeg = unb64(
        "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxD/2Q==",
    );
    // 3 by 2 pixels: `ftyp`, `meta` (its `ispe` gives the size) and an
    // `mdat` with stand-in coded bytes and an Exif item (with a location).
    let heic = unb64(
        "AAAAGGZ0eXBoZWljAAAAAG1pZjFoZWljAAAA121ldGEAAAAAAAAAIWhkbHIAAAAAAAAAAHBpY3QAAAAAAAAAAAAAAAAAAAAADnBpdG0AAAAAAAEAAAA4aWluZgAAAAAAAgAAABVpbmZlAgAAAAABAABodmMxAAAAABVpbmZlAgAAAAACAABFeGlmAAAAACxpbG9jAAAAAEQAAAIAAQAAAAEAAAD3AAAAQAACAAAAAQAAATcAAABgAAAAOGlwcnAAAAAcaXBjbwAAABRpc3BlAAAAAAAAAAMAAAACAAAAFGlwbWEAAAAAAAAAAQABAYEAAACobWRhdKurq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6sAAAAASUkqAAgAAAACABIBAwABAAAAAQAAACWIBAABAAAAJgAAAAAAAAACAAEAAgACAAAATgAAAAIABQADAAAARAAAAAAAAAAnAAAAAQAAADYAAAABAAAAjAoAAGQAAAA=",
    );
    let gif = unb64("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7");
    let webp = unb64("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==");
    let ftyp = |major: &[u8; 4], compatible: &[u8; 4]| {
        let mut b = 24u32.to_be_bytes().to_vec();
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(compatible);
        b.extend_from_slice(b"mif1");
        b.extend_from_slice(&8u32.to_be_bytes());
        b.extend_from_slice(b"free");
        b
    };
    let mut adts = vec![0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc];
    adts.extend_from_slice(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]);
    let mut opus = b"OggS\0\x02".to_vec();
    opus.extend_from_slice(&[0; 20]);
    opus.extend_from_slice(&[1, 19]);
    opus.extend_from_slice(b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0");
    vec![
        ("image", "image/png", png()),
        ("image", "image/jpeg", jpeg),
        ("image", "image/gif", gif),
        ("image", "image/webp", webp),
        ("image", "image/heic", heic),
        ("voice", "audio/aac", adts),
        ("voice", "audio/ogg", opus),
        ("voice", "audio/amr", b"#!AMR\n\x3c\x48\xf5\x1f".to_vec()),
        ("voice", "audio/mp4", ftyp(b"M4A ", b"isom")),
        ("video", "video/mp4", ftyp(b"isom", b"mp41")),
        (
            "file",
            "application/octet-stream",
            b"%PDF-1.4 a document".to_vec(),
        ),
    ]
}

pub(crate) struct Media<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
}

impl<'a> Media<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.base_url)
    }

    /// `POST /v1/uploads`, with the first bytes when given.
    async fn create(
        &self,
        user: &User,
        kind: &str,
        length: u64,
        name: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> reqwest::Response {
        let mut metadata = format!("kind {}", b64(kind));
        if let Some(name) = name {
            metadata.push_str(&format!(",name {}", b64(name)));
        }
        let mut request = self
            .client
            .post(self.url("/v1/uploads"))
            .bearer_auth(&user.tokens.access_token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", metadata);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/offset+octet-stream")
                .body(body);
        }
        request.send().await.unwrap()
    }

    /// Creates an upload and answers its location.
    async fn open(&self, user: &User, kind: &str, length: u64) -> String {
        let created = self.create(user, kind, length, None, None).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        assert_eq!(created.headers()["upload-offset"], "0");
        assert!(created.headers().contains_key("upload-expires"));
        created.headers()["location"].to_str().unwrap().to_string()
    }

    async fn patch(
        &self,
        user: &User,
        location: &str,
        offset: u64,
        body: &[u8],
    ) -> reqwest::Response {
        self.client
            .patch(self.url(location))
            .bearer_auth(&user.tokens.access_token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn head(&self, user: &User, location: &str) -> reqwest::Response {
        self.client
            .head(self.url(location))
            .bearer_auth(&user.tokens.access_token)
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await
            .unwrap()
    }

    /// Uploads `bytes` whole as `kind` and answers the media id.
    pub(crate) async fn upload(
        &self,
        user: &User,
        kind: &str,
        name: Option<&str>,
        bytes: &[u8],
    ) -> String {
        let created = self
            .create(user, kind, bytes.len() as u64, name, None)
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let location = created.headers()["location"].to_str().unwrap().to_string();
        let done = self.patch(user, &location, 0, bytes).await;
        assert_eq!(done.status(), StatusCode::NO_CONTENT, "{kind}");
        done.headers()["upload-media-id"]
            .to_str()
            .unwrap()
            .to_string()
    }

    pub(crate) async fn link(&self, user: &User, media_id: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/media/{media_id}/link")))
            .bearer_auth(&user.tokens.access_token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A link's URL, made for `user`.
    async fn link_url(&self, user: &User, media_id: &str) -> String {
        let link = self.link(user, media_id, json!({})).await;
        assert_eq!(link.status(), StatusCode::OK);
        let link: Value = link.json().await.unwrap();
        link["url"].as_str().unwrap().to_string()
    }

    pub(crate) async fn get(&self, url: &str, range: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(url));
        if let Some(range) = range {
            request = request.header("Range", range);
        }
        request.send().await.unwrap()
    }

    pub(crate) async fn usage(&self, user: &User) -> Value {
        self.client
            .get(self.url("/v1/media/usage"))
            .bearer_auth(&user.tokens.access_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub(crate) async fn code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["code"].as_str().unwrap_or_default().to_string(),
    )
}

/// Files (not directories) under `dir`, recursively.
pub(crate) fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
        .sum()
}

#[tokio::test]
async fn tus_discovery_names_the_version_its_extensions_and_the_largest_upload() {
    let app = spawn_app().await;
    let answer = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/uploads", app.base_url),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert_eq!(answer.headers()["tus-version"], "1.0.0");
    let extensions = answer.headers()["tus-extension"].to_str().unwrap();
    for extension in [
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
    ] {
        assert!(
            extensions.split(',').any(|e| e == extension),
            "{extensions}"
        );
    }
    assert_eq!(answer.headers()["tus-max-size"], (1u64 << 30).to_string());
}

#[tokio::test]
async fn an_upload_of_each_kind_is_sniffed_stored_and_described() {
    let app = spawn_app().await;
    let media = Media::new(&app);
    let alice = app.user("alice").await;
    for (kind, mime, bytes) in samples() {
        let media_id = media.upload(&alice, kind, None, &bytes).await;
        if kind != "image" {
            // Images are stored as processing leaves them; the rest as sent.
            assert_eq!(media_id, sha256(&bytes), "{mime}");
        }
        let link = media.link_url(&alice, &media_id).await;
        let download = media.get(&link, None).await;
        assert_eq!(download.status(), StatusCode::OK, "{mime}");
        assert_eq!(download.headers()["content-type"], mime);
    }
    // Creation with upload: the bytes come with the POST.
    let bytes = b"#!AMR\n\x3c\x48\xf5\x1f\x00".to_vec();
    let created = media
        .create(
            &alice,
            "voice",
            bytes.len() as u64,
            None,
            Some(bytes.clone()),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        created.headers()["upload-media-id"],
        sha256(&bytes).as_str()
    );
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let status: Value = reqwest::Client::new()
        .get(format!("{}{location}", app.base_url))
        .bearer_auth(&alice.tokens.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["complete"], true);
    assert_eq!(status["offset"], bytes.len());
    assert_eq!(status["media"]["media_id"], sha256(&bytes).as_str());
    assert_eq!(status["media"]["kind"], "voice");
    assert_eq!(status["media"]["mime"], "audio/amr");
}

#[tokio::test]
async fn a_kind_that_lies_about_its_content_is_refused_and_discarded() {
    let app = spawn_app().await;
    let media = Media::new(&app);
    let alice = app.user("alice").await;
    let html = b"<!doctype html><script>alert(document.cookie)</script>".to_vec();
    for (kind, bytes) in [("voice", png()), ("image", html.clone()), ("video", png())] {
        let location = media.open(&alice, kind, bytes.len() as u64).await;
        let refused = media.patch(&alice, &location, 0, &bytes).await;
        assert_eq!(
            code(refused).await,
            (StatusCode::UNPROCESSABLE_ENTITY, "kind_mismatch".into())
        );
        assert_eq!(
            media.head(&alice, &location).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    // As a file it is accepted, and only ever served as a download.
    let media_id = media.upload(&alice, "file", None, &html).await;
    let download = media
        .get(&media.link_url(&alice, &media_id).await, None)
        .await;
    assert_eq!(
        download.headers()["content-type"],
        "application/octet-stream"
    );
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    // A PNG declared a file is a download too, not an inline image.
    let media_id = media.upload(&alice, "file", Some("p.png"), &png()).await;
    let download = media
        .get(&media.link_url(&alice, &media_id).await, None)
        .await;
    assert_eq!(
        download.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(usage_open(&media, &alice).await, 0);
}

async fn usage_open(media: &Media<'_>, user: &User) -> u64 {
    media.usage(user).await["open_uploads"].as_u64().unwrap()
}

#[tokio::test]
async fn uploads_past_their_kind_s_limit_or_their_length_are_refused() {
    let app = spawn_app_with(|c| c.media.max_image_bytes = 1_000).await;
    let media = Media::new(&app);
    let alice = app.user("alice").await;
    let refused = media.create(&alice, "image", 1_001, None, None).await;
    assert_eq!(
        code(refused).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large".into())
    );
    assert_eq!(usage_open(&media, &alice).await, 0);
    // Bytes past Upload-Length: nothing of the request is kept.
    let location = media.open(&alice, "file", 10).await;
    assert_eq!(
        media.patch(&alice, &location, 0, b"12345").await.status(),
        StatusCode::NO_CONTENT
    );
    let refused = media.patch(&alice, &location, 5, b"6789012345").await;
    assert_eq!(
        code(refused).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "beyond_length".into())
    );
    assert_eq!(
        media.head(&alice, &location).await.headers()["upload-offset"],
        "5"
    );
    // The wrong offset, the wrong type, the wrong tus version.
    let refused = media.patch(&alice, &location, 3, b"x").await;
    assert_eq!(
        code(refused).await,
        (StatusCode::CONFLICT, "offset_mismatch".into())
    );
    let wrong_type = reqwest::Client::new()
        .patch(format!("{}{location}", app.base_url))
        .bearer_auth(&alice.tokens.access_token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "5")
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let old = reqwest::Client::new()
        .head(format!("{}{location}", app.base_url))
        .bearer_auth(&alice.tokens.access_token)
        .header("Tus-Resumable", "0.2.2")
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(old.headers()["tus-version"], "1.0.0");
}

#[tokio::test]
async fn a_truncated_upload_stays_open_and_makes_nothing_usable() {
    let app = spawn_app().await;
    let media = Media::new(&app);
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let location = media.open(&alice, "file", 100).await;
    assert_eq!(
        media.patch(&alice, &location, 0, &[7; 40]).await.status(),
        StatusCode::NO_CONTENT
    );
    let head = media.head(&alice, &location).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["upload-offset"], "40");
    assert_eq!(head.headers()["upload-length"], "100");
    assert_eq!(head.headers()["cache-control"], "no-store");
    assert!(!head.headers().contains_key("upload-media-id"));
    assert_eq!(usage_open(&media, &alice).await, 1);
    assert_eq!(media.usage(&alice).await["used_bytes"], 0);
    // Its bytes so far are no object anyone may link.
    let partial = sha256(&[7; 40]);
    assert_eq!(
        code(media.link(&alice, &partial, json!({})).await).await.1,
        "media_not_found"
    );
    // Another user's upload id is unknown to them.
    assert_eq!(
        media.head(&bob, &location).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        code(media.patch(&bob, &location, 40, b"x").await).await.1,
        "unknown_upload"
    );
    // Cancelled, it is gone.
    let deleted = reqwest::Client::new()
        .delete(format!("{}{location}", app.base_url))
        .bearer_auth(&alice.tokens.access_token)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        media.head(&alice, &location).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(files_under(&app.dir.path().join("media/staging")), 0);
}

#[tokio::test]
async fn an_upload_cut_mid_request_resumes_from_what_arrived() {
    let app = spawn_app().await;
    let media = Media::new(&app);
    let alice = app.user("alice").await;
    let whole: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let location = media.open(&alice, "file", whole.len() as u64).await;
    // A client that announces the whole body, sends a part and hangs up.
    let addr = app.base_url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        alice.tokens.access_token,
        whole.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&whole[..80_000]).await.unwrap();
    tcp.flush().await.unwrap();
    tcp.shutdown().await.unwrap();
    drop(tcp);
    // What arrived is kept once the server notices the cut.
    let mut offset = 0;
    for _ in 0..200 {
        let head = media.head(&alice, &location).await;
        offset = head.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        if offset == 80_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(offset, 80_000);
    let done = media
        .patch(&alice, &location, offset, &whole[80_000..])
        .await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    assert_eq!(done.headers()["upload-media-id"], sha256(&whole).as_str());
    let download = media
        .get(&media.link_url(&alice, &sha256(&whole)).await, None)
        .await;
    assert_eq!(download.bytes().await.unwrap().as_ref(), whole.as_slice());
}

#[tokio::test]
async fn the_same_bytes_from_two_users_are_stored_once_and_counted_for_each() {
    let app = spawn_app().await;
    let media = Media::new(&app);
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let bytes = vec![42u8; 5_000];
    let a = media.upload(&alice, "file", Some("a.bin"), &bytes).await;
    let b = media.upload(&bob, "file", Some("b.bin"), &bytes).await;
    assert_eq!(a, b);
    assert_eq!(files_under(&app.dir.path().join("media/blobs")), 1);
    assert_eq!(media.usage(&alice).await["used_bytes"], 5_000);
    assert_eq!(media.usage(&bob).await["used_bytes"], 5_000);
    // Each holder's link serves it under their own name.
    let download = media.get(&media.link_url(&bob, &b).await, None).await;
    assert_eq!(
        download.headers()["content-disposition"],
        "attachment; filename*=UTF-8''b.bin"
    );
}

#[tokio::test]
async fn the_quota_refuses_an_upload_that_would_pass_it() {
    let app = spawn_app_with(|c| c.media.quota_bytes = 1_000).await;
    let media = Media::new(&app);
    let alice = app.user("alice").await;
    let bytes = vec![1u8; 400];
    media.upload(&alice, "file", None, &bytes).await;
    let refused = media.create(&alice, "file", 700, None, None).await;
    assert_eq!(
        code(refused).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded".into())
    );
    // The same content again takes nothing more once it is stored.
    media.upload(&alice, "file", None, &bytes).await;
    let usage = media.usage(&alice).await;
    assert_eq!(
        (usage["used_bytes"].as_u64(), usage["quota_bytes"].as_u64()),
        (Some(400), Some(1_000))
    );
    media.upload(&alice, "file", None, &[2u8; 600]).await;
    assert_eq!(media.usage(&alice).await["used_bytes"], 1_000);
}

#[tokio::test]
async fn a_link_is_refused_to_who_neither_holds_the_media_nor_sees_a_message_with_it() {
    let app = spawn_app().await;
    let media = Media::new(&app);
    let (alice, mallory) = (app.user("alice").await, app.user("mallory").await);
    let media_id = media.upload(&alice, "image", None, &png()).await;
    let refused = media.link(&mallory, &media_id, json!({})).await;
    assert_eq!(
        code(refused).await,
        (StatusCode::NOT_FOUND, "media_not_found".into())
    );
    // Naming a message does not help when it shows the media to nobody here.
    let refused = media
        .link(
            &mallory,
            &media_id,
            json!({"conversation_id": "d.1.2", "seq": 1}),
        )
        .await;
    assert_eq!(
        code(refused).await,
        (StatusCode::NOT_FOUND, "media_not_found".into())
    );
    // Exactly as for media that does not exist.
    let missing = media.link(&mallory, &"0".repeat(64), json!({})).await;
    assert_eq!(
        code(missing).await,
        (StatusCode::NOT_FOUND, "media_not_found".into())
    );
    let unauthenticated = reqwest::Client::new()
        .post(format!("{}/v1/media/{media_id}/link", app.base_url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_link_stops_working_when_it_expires() {
    let clock = manual_clock();
    let app = spawn_app_with_clock(|c| c.media.link_ttl_secs = 60, clock.clone()).await;
    let media = Media::new(&app);
    let alice = app.user("alice").await;
    let media_id = media.upload(&alice, "file", None, b"soon gone").await;
    let url = media.link_url(&alice, &media_id).await;
    assert_eq!(media.get(&url, None).await.status(), StatusCode::OK);
    clock.advance_ms(60_000);
    assert_eq!(
        code(media.get(&url, None).await).await,
        (StatusCode::FORBIDDEN, "link_expired".into())
    );
}

#[tokio::test]
async fn a_tampered_link_is_refused() {
    let app = spawn_app().await;
    let media = Media::new(&app);
    let alice = app.user("alice").await;
    let media_id = media.upload(&alice, "file", Some("a.txt"), b"secret").await;
    let url = media.link_url(&alice, &media_id).await;
    let (path, query) = url.split_once('?').unwrap();
    let exp: i64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("exp="))
        .unwrap()
        .parse()
        .unwrap();
    let tampered = [
        url.replace(&format!("exp={exp}"), &format!("exp={}", exp + 86_400_000)),
        url.replace("name=a.txt", "name=a.html"),
        url.replace("variant=original", "variant=thumbnail"),
        format!("{}?{}", path.replace(&media_id, &"a".repeat(64)), query),
        format!("{}x", url),
    ];
    for url in tampered {
        assert_eq!(
            code(media.get(&url, None).await).await,
            (StatusCode::FORBIDDEN, "bad_signature".into()),
            "{url}"
        );
    }
}

#[tokio::test]
async fn single_byte_ranges_are_served_and_impossible_ones_refused() {
    let app = spawn_app().await;
    let media = Media::new(&app);
    let alice = app.user("alice").await;
    let bytes: Vec<u8> = (0..1_000u32).map(|i| (i % 256) as u8).collect();
    let video = {
        let mut b = 24u32.to_be_bytes().to_vec();
        b.extend_from_slice(b"ftypisom\0\0\0\0isommp41");
        b.extend_from_slice(&bytes[24..]);
        b
    };
    let media_id = media.upload(&alice, "video", None, &video).await;
    let url = media.link_url(&alice, &media_id).await;
    let whole = media.get(&url, None).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["content-length"], "1000");
    for (range, first, last) in [
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=900-5000", 900, 999),
    ] {
        let part = media.get(&url, Some(range)).await;
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            part.headers()["content-range"],
            format!("bytes {first}-{last}/1000").as_str()
        );
        assert_eq!(part.bytes().await.unwrap().as_ref(), &video[first..=last]);
    }
    let refused = media.get(&url, Some("bytes=1000-")).await;
    assert_eq!(refused.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(refused.headers()["content-range"], "bytes */1000");
}

#[tokio::test]
async fn downloads_carry_headers_that_keep_user_content_off_this_origin() {
    let app = spawn_app().await;
    let media = Media::new(&app);
    let alice = app.user("alice").await;
    let html = b"<html><script>fetch('/v1/me')</script></html>".to_vec();
    let media_id = media.upload(&alice, "file", Some("a\"b.html"), &html).await;
    let download = media
        .get(&media.link_url(&alice, &media_id).await, None)
        .await;
    let h = download.headers();
    assert_eq!(
        h["content-disposition"],
        "attachment; filename*=UTF-8''a%22b.html"
    );
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-security-policy"], "sandbox; default-src 'none'");
    assert_eq!(h["cache-control"], "private, max-age=600");
    assert_eq!(h["etag"], format!("\"{media_id}\"").as_str());
    // An image is shown inline as exactly what it was sniffed as.
    let image = media.upload(&alice, "image", None, &png()).await;
    let download = media.get(&media.link_url(&alice, &image).await, None).await;
    assert_eq!(download.headers()["content-type"], "image/png");
    assert_eq!(download.headers()["content-disposition"], "inline");
    assert_eq!(download.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn media_nothing_references_is_collected_after_the_grace_period() {
    let app = spawn_app_with(|c| {
        c.media.grace_secs = 0;
        c.media.sweep_secs = 1;
    })
    .await;
    let media = Media::new(&app);
    let alice = app.user("alice").await;
    let media_id = media.upload(&alice, "file", None, &[9u8; 3_000]).await;
    let blobs = app.dir.path().join("media/blobs");
    let mut collected = false;
    for _ in 0..100 {
        if files_under(&blobs) == 0 {
            collected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(collected, "the sweep deleted the blob");
    assert_eq!(media.usage(&alice).await["used_bytes"], 0);
    let gone = media.link(&alice, &media_id, json!({})).await;
    assert_eq!(code(gone).await.1, "media_not_found");
}

#[tokio::test]
async fn an_uploaded_picture_is_an_avatar_that_whoever_is_shown_it_may_fetch() {
    use superapp_client::ProfileUpdate;
    let app = spawn_app().await;
    let media = Media::new(&app);
    let (ann, bo) = (app.user("ann").await, app.user("bo").await);
    let picture = media.upload(&ann, "image", None, &png()).await;
    let voice = media
        .upload(&ann, "voice", None, b"#!AMR\n\x3c\x48\xf5\x1f")
        .await;
    let avatar = |url: String| ProfileUpdate {
        avatar_url: Some(url),
        ..ProfileUpdate::default()
    };
    let set = |user: &User, url: String| {
        let (http, token) = (app.http.clone(), user.tokens.access_token.clone());
        async move { http.update_profile(&token, &avatar(url)).await }
    };
    // Bo may not wear Ann's picture, nor Ann a voice note.
    let refused = set(&bo, format!("media:{picture}")).await.unwrap_err();
    assert_eq!(refused.code(), Some("avatar_refused"));
    let refused = set(&ann, format!("media:{voice}")).await.unwrap_err();
    assert_eq!(refused.code(), Some("avatar_refused"));

    set(&ann, format!("media:{picture}")).await.unwrap();
    let shown = app
        .http
        .user_profile(&bo.tokens.access_token, ann.id)
        .await
        .unwrap();
    assert_eq!(shown.avatar_url, format!("media:{picture}"));
    let by_ann = json!({ "user_id": ann.id.to_string() });
    let link = media.link(&bo, &picture, by_ann.clone()).await;
    assert_eq!(link.status(), StatusCode::OK);
    let link: Value = link.json().await.unwrap();
    let fetched = media.get(link["url"].as_str().unwrap(), None).await;
    assert_eq!(fetched.bytes().await.unwrap(), png());
    // Naming Ann opens her avatar, nothing else of hers.
    let other = media.link(&bo, &voice, by_ann.clone()).await;
    assert_eq!(code(other).await.1, "media_not_found");
    // Once she wears another, her old picture is no longer shown by her.
    set(&ann, "https://example.com/ann.png".into())
        .await
        .unwrap();
    let gone = media.link(&bo, &picture, by_ann).await;
    assert_eq!(code(gone).await.1, "media_not_found");
}
