//! The media room's rules as pure functions: what bytes are which kind,
//! which uploads may begin, how tus metadata and byte ranges read, how a
//! download link is signed and how its file name is served, and when an
//! object may be collected. Backends call these inside their writes; the
//! edge calls them on what it reads from a request.

use std::collections::HashMap;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::MediaError;
use crate::image::ImageFormat;
use crate::model::{
    ByteRange, LinkParams, MediaId, MediaKind, NewUpload, Sniffed, UploadLimits, Usage, Variant,
};

/// The bytes [`sniff`] looks at, at most: enough for every signature it
/// knows, an ISO-BMFF `ftyp` box with its compatible brands included.
pub const SNIFF_LEN: usize = 256;

/// The content type of anything that is not a recognised image, voice or
/// video: a download, never rendered.
pub const OCTET_STREAM: &str = "application/octet-stream";

const fn image(mime: &'static str, format: ImageFormat) -> Sniffed {
    Sniffed {
        kind: MediaKind::Image,
        mime,
        image: Some(format),
    }
}

const fn media(kind: MediaKind, mime: &'static str) -> Sniffed {
    Sniffed {
        kind,
        mime,
        image: None,
    }
}

/// Anything unrecognised: SVG, HTML, archives, text.
pub const UNRECOGNISED: Sniffed = media(MediaKind::File, OCTET_STREAM);

/// What the first bytes of some content say it is, by magic bytes alone.
/// Only formats that browsers render harmlessly are recognised as image,
/// voice or video; everything else (SVG and HTML included) is a file.
pub fn sniff(head: &[u8]) -> Sniffed {
    if head.starts_with(&[0xff, 0xd8, 0xff]) {
        return image("image/jpeg", ImageFormat::Jpeg);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return image("image/png", ImageFormat::Png);
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return image("image/gif", ImageFormat::Gif);
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return image("image/webp", ImageFormat::Webp);
    }
    if let Some(sniffed) = sniff_ftyp(head) {
        return sniffed;
    }
    if head.starts_with(b"#!AMR-WB\n") {
        return media(MediaKind::Voice, "audio/amr-wb");
    }
    if head.starts_with(b"#!AMR\n") {
        return media(MediaKind::Voice, "audio/amr");
    }
    if is_ogg_opus(head) {
        return media(MediaKind::Voice, "audio/ogg");
    }
    // ADTS: a 12-bit sync word and layer 00 (MPEG audio frames, which share
    // the sync word, have a non-zero layer).
    if head.len() >= 7 && head[0] == 0xff && head[1] & 0xf6 == 0xf0 {
        return media(MediaKind::Voice, "audio/aac");
    }
    UNRECOGNISED
}

/// An Ogg page whose first packet is an Opus identification header.
fn is_ogg_opus(head: &[u8]) -> bool {
    if head.len() < 27 || &head[..4] != b"OggS" {
        return false;
    }
    let packet = 27 + usize::from(head[26]);
    head.get(packet..packet + 8) == Some(b"OpusHead".as_slice())
}

/// ISO base media files (MP4, M4A, HEIC) by the brands of their `ftyp` box.
fn sniff_ftyp(head: &[u8]) -> Option<Sniffed> {
    if head.len() < 16 || &head[4..8] != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if size < 16 {
        return None;
    }
    let major = &head[8..12];
    let end = size.min(head.len());
    let compatible: Vec<&[u8]> = head[16..end].chunks_exact(4).collect();
    let brands = || std::iter::once(major).chain(compatible.iter().copied());
    const HEIC: [&[u8]; 6] = [b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"];
    const HEIF: [&[u8]; 2] = [b"mif1", b"msf1"];
    const AUDIO: [&[u8]; 2] = [b"M4A ", b"M4B "];
    const VIDEO: [&[u8]; 10] = [
        b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ", b"dash",
    ];
    if HEIC.contains(&major) || (HEIF.contains(&major) && brands().any(|b| HEIC.contains(&b))) {
        return Some(image("image/heic", ImageFormat::Heic));
    }
    if HEIF.contains(&major) {
        return Some(image("image/heif", ImageFormat::Heic));
    }
    if AUDIO.contains(&major) {
        return Some(media(MediaKind::Voice, "audio/mp4"));
    }
    if major == b"qt  " {
        return Some(media(MediaKind::Video, "video/quicktime"));
    }
    if VIDEO.contains(&major) {
        return Some(media(MediaKind::Video, "video/mp4"));
    }
    None
}

/// Whether content sniffed as `sniffed` may be kept as `declared`: a file
/// may be anything; any other kind must be what the bytes say.
pub fn check_kind(declared: MediaKind, sniffed: &Sniffed) -> Result<(), MediaError> {
    if declared == MediaKind::File || declared == sniffed.kind {
        Ok(())
    } else {
        Err(MediaError::KindMismatch {
            declared,
            sniffed: sniffed.kind,
        })
    }
}

/// The largest upload of each kind, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    pub image: u64,
    pub voice: u64,
    pub video: u64,
    pub file: u64,
}

impl SizeLimits {
    pub fn of(&self, kind: MediaKind) -> u64 {
        match kind {
            MediaKind::Image => self.image,
            MediaKind::Voice => self.voice,
            MediaKind::Video => self.video,
            MediaKind::File => self.file,
        }
    }
}

/// Whether `upload` fits its kind's size limit.
pub fn check_length(upload: &NewUpload, limits: &SizeLimits) -> Result<(), MediaError> {
    let max = limits.of(upload.kind);
    if upload.length > max {
        return Err(MediaError::TooLarge { max });
    }
    Ok(())
}

/// Whether a user with `usage` may open one more upload of `length` bytes:
/// not past their open uploads' cap, and not past their quota counting
/// what they hold and what their open uploads have reserved. Checked inside
/// the write that records the upload, so that two creations cannot both
/// pass it.
pub fn may_open(usage: &Usage, length: u64, limits: &UploadLimits) -> Result<(), MediaError> {
    if usage.open_uploads >= limits.max_open_uploads {
        return Err(MediaError::TooManyUploads {
            max: limits.max_open_uploads,
        });
    }
    let wanted = usage
        .used_bytes
        .saturating_add(usage.reserved_bytes)
        .saturating_add(length);
    if wanted > limits.quota_bytes {
        return Err(MediaError::QuotaExceeded {
            quota_bytes: limits.quota_bytes,
        });
    }
    Ok(())
}

/// Longest file name kept, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// What the tus `Upload-Metadata` header says about an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: MediaKind,
    pub name: Option<String>,
    pub keep_exif: bool,
}

/// Reads tus `Upload-Metadata`: comma-separated pairs of a key and its
/// base64 value (the value may be absent). `kind` is required; `name` and
/// `keep_exif` ("true" keeps image metadata) are optional; other keys are
/// ignored, as tus allows. A repeated key, a key with a space or comma, and
/// a value that is not base64 are refused.
pub fn parse_metadata(header: &str) -> Result<Metadata, MediaError> {
    let invalid = |reason: &'static str| MediaError::InvalidMetadata { reason };
    let mut pairs: HashMap<&str, Option<Vec<u8>>> = HashMap::new();
    for pair in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.splitn(2, ' ');
        let key = parts.next().unwrap_or_default();
        let value = parts.next().map(str::trim);
        if key.is_empty() || !key.is_ascii() {
            return Err(invalid("metadata keys are ASCII without spaces or commas"));
        }
        let value = match value {
            Some(v) if !v.is_empty() => Some(
                BASE64_ANY
                    .decode(v)
                    .map_err(|_| invalid("metadata values are base64"))?,
            ),
            _ => None,
        };
        if pairs.insert(key, value).is_some() {
            return Err(invalid("a metadata key appears twice"));
        }
    }
    let text = |key: &str| -> Result<Option<String>, MediaError> {
        match pairs.get(key) {
            Some(Some(bytes)) => String::from_utf8(bytes.clone())
                .map(Some)
                .map_err(|_| invalid("metadata text is UTF-8")),
            _ => Ok(None),
        }
    };
    let kind = text("kind")?
        .ok_or(invalid(
            "metadata kind is required (image, voice, video or file)",
        ))?
        .parse::<MediaKind>()
        .map_err(|_| invalid("metadata kind is image, voice, video or file"))?;
    let name = match text("name")? {
        Some(name) if name.len() > MAX_NAME_BYTES => {
            return Err(invalid("metadata name is at most 255 bytes"));
        }
        name => name.as_deref().and_then(sanitize_name),
    };
    let keep_exif = text("keep_exif")?.as_deref() == Some("true");
    Ok(Metadata {
        kind,
        name,
        keep_exif,
    })
}

/// Standard base64 with or without padding, as tus clients write it.
const BASE64_ANY: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// A file name as it may be served: no control characters or path
/// separators (each becomes `_`), no leading dots or surrounding spaces,
/// at most [`MAX_NAME_BYTES`]; None when nothing is left.
pub fn sanitize_name(name: &str) -> Option<String> {
    let mut clean: String = name
        .chars()
        .map(|c| {
            if c.is_control() || c == '/' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .collect();
    clean = clean.trim().trim_start_matches('.').trim().to_string();
    while clean.len() > MAX_NAME_BYTES {
        clean.pop();
    }
    (!clean.is_empty()).then_some(clean)
}

/// RFC 5987 `attr-char`: what `filename*` carries without percent-encoding.
fn attr_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b)
}

/// The `Content-Disposition` of a download (RFC 6266), its name in the
/// RFC 5987 form so that no character of it can end the header's value.
pub fn attachment(name: &str) -> String {
    let mut value = String::from("attachment; filename*=UTF-8''");
    for b in name.bytes() {
        if attr_char(b) {
            value.push(char::from(b));
        } else {
            value.push_str(&format!("%{b:02X}"));
        }
    }
    value
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No range, or one this server ignores (several ranges, another unit,
    /// a malformed one): the whole object, 200.
    Full,
    /// One satisfiable range: 206 with `Content-Range`.
    Partial(ByteRange),
    /// A well-formed range that starts past the end: 416.
    Unsatisfiable,
}

/// Reads a single byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against
/// an object of `size` bytes (RFC 9110 §14). `b` past the end is clamped;
/// `-n` larger than the object means all of it.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // Suffix: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial(ByteRange {
                    first: size - n.min(size),
                    last: size - 1,
                })
            }
        }
        (false, Some(a), None) if last.trim().is_empty() => {
            if a >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial(ByteRange {
                    first: a,
                    last: size - 1,
                })
            }
        }
        (false, Some(a), Some(b)) if a <= b => {
            if a >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial(ByteRange {
                    first: a,
                    last: b.min(size - 1),
                })
            }
        }
        _ => RangeAnswer::Full,
    }
}

/// The key links are signed with (32 bytes): `media.link_key`, or the key
/// file of the data dir. Every core node that serves downloads must share it.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl LinkKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self, params: &LinkParams) -> Hmac<Sha256> {
        // Infallible: HMAC takes a key of any length.
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(canonical(params).as_bytes());
        mac
    }

    /// The `sig` of a link: base64url (unpadded) HMAC-SHA256 of its other
    /// parameters in their canonical order.
    pub fn sign(&self, params: &LinkParams) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.mac(params).finalize().into_bytes())
    }

    /// Whether `sig` signs `params` (compared in constant time).
    pub fn verify(&self, params: &LinkParams, sig: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        self.mac(params).verify_slice(&tag).is_ok()
    }
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey([redacted])")
    }
}

/// The signed string of a link: a version, then each parameter on its own
/// line; an absent name is `-` and a present one `=name`, so that no two
/// links sign the same string. Names hold no line breaks
/// ([`sanitize_name`]).
fn canonical(params: &LinkParams) -> String {
    let name = match &params.name {
        Some(name) => format!("={name}"),
        None => "-".to_string(),
    };
    format!(
        "media-link-v1\n{}\n{}\n{}\n{}",
        params.media_id,
        params.variant.as_str(),
        name,
        params.exp_ms
    )
}

/// A link's path and query: `/v1/files/{media_id}?variant=&name=&exp=&sig=`.
pub fn link_url(key: &LinkKey, params: &LinkParams) -> String {
    let mut url = format!(
        "/v1/files/{}?variant={}",
        params.media_id,
        params.variant.as_str()
    );
    if let Some(name) = &params.name {
        url.push_str("&name=");
        url.push_str(&query_escape(name));
    }
    url.push_str(&format!("&exp={}&sig={}", params.exp_ms, key.sign(params)));
    url
}

/// Whether a link may be served at `now_ms`: its signature first (a
/// tampered link is `bad_signature` whatever its expiry), then its expiry.
pub fn check_link(
    key: &LinkKey,
    params: &LinkParams,
    sig: &str,
    now_ms: i64,
) -> Result<(), MediaError> {
    if !key.verify(params, sig) {
        return Err(MediaError::BadSignature);
    }
    if now_ms >= params.exp_ms {
        return Err(MediaError::LinkExpired);
    }
    Ok(())
}

/// The blob key of an object's variant. Two hex digits of the id first, so
/// that a filesystem directory never holds every object.
pub fn blob_key(media_id: &MediaId, variant: Variant) -> String {
    let id = media_id.as_str();
    let prefix = match variant {
        Variant::Original => "o",
        Variant::Thumbnail => "t",
    };
    format!("{prefix}/{}/{id}", &id[..2])
}

/// Whether an object may be collected at `now_ms`: nothing references it,
/// nobody finished an upload of it within the grace period, and its blob
/// is not being put (an object whose put never finished is collected only
/// after an hour more, long after any put gives up).
pub fn collectable(
    referenced: bool,
    stored: bool,
    last_upload_ms: i64,
    now_ms: i64,
    grace_ms: i64,
) -> bool {
    const UNFINISHED_PUT_MS: i64 = 3_600_000;
    let quiet_since = now_ms.saturating_sub(grace_ms);
    !referenced
        && last_upload_ms <= quiet_since
        && (stored || last_upload_ms <= quiet_since.saturating_sub(UNFINISHED_PUT_MS))
}

/// An HTTP-date (RFC 9110 §5.6.7), as tus' `Upload-Expires` carries it.
pub fn http_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len();
        let mut b = (size as u32).to_be_bytes().to_vec();
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0, 0, 0, 0]);
        for c in compatible {
            b.extend_from_slice(*c);
        }
        b
    }

    #[test]
    fn each_known_format_is_sniffed_by_its_magic_bytes() {
        let mut ogg = b"OggS".to_vec();
        ogg.extend_from_slice(&[0; 22]);
        ogg.push(1);
        ogg.push(19);
        ogg.extend_from_slice(b"OpusHead");
        let cases: Vec<(Vec<u8>, MediaKind, &str)> = vec![
            (
                vec![0xff, 0xd8, 0xff, 0xe0, 0, 0x10],
                MediaKind::Image,
                "image/jpeg",
            ),
            (
                b"\x89PNG\r\n\x1a\n\0\0".to_vec(),
                MediaKind::Image,
                "image/png",
            ),
            (b"GIF89a..".to_vec(), MediaKind::Image, "image/gif"),
            (
                b"RIFF\0\0\0\0WEBPVP8 ".to_vec(),
                MediaKind::Image,
                "image/webp",
            ),
            (ftyp(b"heic", &[b"mif1"]), MediaKind::Image, "image/heic"),
            (ftyp(b"mif1", &[b"heic"]), MediaKind::Image, "image/heic"),
            (ftyp(b"msf1", &[]), MediaKind::Image, "image/heif"),
            (ftyp(b"M4A ", &[b"isom"]), MediaKind::Voice, "audio/mp4"),
            (
                vec![0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc],
                MediaKind::Voice,
                "audio/aac",
            ),
            (ogg, MediaKind::Voice, "audio/ogg"),
            (b"#!AMR\n\x3c".to_vec(), MediaKind::Voice, "audio/amr"),
            (b"#!AMR-WB\n".to_vec(), MediaKind::Voice, "audio/amr-wb"),
            (
                ftyp(b"isom", &[b"iso2", b"mp41"]),
                MediaKind::Video,
                "video/mp4",
            ),
            (ftyp(b"mp42", &[]), MediaKind::Video, "video/mp4"),
            (ftyp(b"qt  ", &[]), MediaKind::Video, "video/quicktime"),
        ];
        for (bytes, kind, mime) in cases {
            let s = sniff(&bytes);
            assert_eq!((s.kind, s.mime), (kind, mime), "{bytes:?}");
        }
    }

    #[test]
    fn svg_html_mp3_and_oggs_without_opus_are_only_files() {
        for bytes in [
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".as_slice(),
            b"<!doctype html><script>alert(1)</script>",
            b"\xff\xfb\x90\x64\0\0\0\0",
            b"OggS\0\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x1evorbis",
            b"",
        ] {
            assert_eq!(sniff(bytes), UNRECOGNISED, "{bytes:?}");
        }
    }

    #[test]
    fn a_declared_kind_must_be_the_sniffed_one_except_a_file() {
        let png = sniff(b"\x89PNG\r\n\x1a\n");
        assert!(check_kind(MediaKind::Image, &png).is_ok());
        assert!(check_kind(MediaKind::File, &png).is_ok());
        assert!(matches!(
            check_kind(MediaKind::Voice, &png),
            Err(MediaError::KindMismatch { .. })
        ));
        assert!(check_kind(MediaKind::Image, &UNRECOGNISED).is_err());
    }

    #[test]
    fn metadata_reads_kind_name_and_keep_exif() {
        let m = parse_metadata("kind aW1hZ2U=,name YS5wbmc=,keep_exif dHJ1ZQ,other").unwrap();
        assert_eq!(
            m,
            Metadata {
                kind: MediaKind::Image,
                name: Some("a.png".into()),
                keep_exif: true
            }
        );
        assert!(parse_metadata("name YS5wbmc=").is_err(), "kind is required");
        assert!(parse_metadata("kind aW1hZ2U=,kind aW1hZ2U=").is_err());
        assert!(parse_metadata("kind !!!").is_err());
        assert!(parse_metadata("kind c3Zn").is_err(), "svg is no kind");
    }

    #[test]
    fn file_names_lose_separators_controls_and_leading_dots() {
        assert_eq!(sanitize_name("../../etc/passwd").unwrap(), "_.._etc_passwd");
        assert_eq!(sanitize_name("a\r\nb").unwrap(), "a__b");
        assert_eq!(sanitize_name(" .. "), None);
        assert_eq!(sanitize_name(&"é".repeat(200)).unwrap().len(), 254);
    }

    #[test]
    fn a_disposition_encodes_every_character_that_could_end_it() {
        assert_eq!(
            attachment("a\"b.html"),
            "attachment; filename*=UTF-8''a%22b.html"
        );
        assert_eq!(
            attachment("x; y=é"),
            "attachment; filename*=UTF-8''x%3B%20y%3D%C3%A9"
        );
    }

    #[test]
    fn the_quota_counts_what_is_held_and_what_open_uploads_reserve() {
        let limits = UploadLimits {
            quota_bytes: 100,
            max_open_uploads: 2,
        };
        let usage = Usage {
            used_bytes: 50,
            reserved_bytes: 30,
            open_uploads: 1,
        };
        assert!(may_open(&usage, 20, &limits).is_ok());
        assert!(matches!(
            may_open(&usage, 21, &limits),
            Err(MediaError::QuotaExceeded { quota_bytes: 100 })
        ));
        let busy = Usage {
            open_uploads: 2,
            ..usage
        };
        assert!(matches!(
            may_open(&busy, 0, &limits),
            Err(MediaError::TooManyUploads { max: 2 })
        ));
    }

    #[test]
    fn http_dates_read_as_rfc_9110_writes_them() {
        assert_eq!(http_date(784_111_777_000), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn an_unfinished_put_is_collected_only_long_after_the_grace() {
        assert!(collectable(false, true, 0, 10, 10));
        assert!(!collectable(true, true, 0, 10, 10));
        assert!(!collectable(false, true, 1, 10, 10));
        assert!(!collectable(false, false, 0, 10, 10));
        assert!(collectable(false, false, 0, 3_600_010, 10));
    }

    fn params(name: Option<&str>, exp_ms: i64) -> LinkParams {
        LinkParams {
            media_id: MediaId::from_digest(&[7; 32]),
            variant: Variant::Original,
            name: name.map(str::to_string),
            exp_ms,
        }
    }

    #[test]
    fn a_link_checks_its_signature_before_its_expiry() {
        let key = LinkKey::new([1; 32]);
        let p = params(Some("a.pdf"), 1_000);
        let sig = key.sign(&p);
        assert!(check_link(&key, &p, &sig, 999).is_ok());
        assert!(matches!(
            check_link(&key, &p, &sig, 1_000),
            Err(MediaError::LinkExpired)
        ));
        let later = params(Some("a.pdf"), 2_000);
        assert!(matches!(
            check_link(&key, &later, &sig, 1_500),
            Err(MediaError::BadSignature)
        ));
        let other_key = LinkKey::new([2; 32]);
        assert!(!other_key.verify(&p, &sig));
        assert!(!key.verify(&params(None, 1_000), &sig));
    }

    /// The reference model of a range: the set of byte offsets it selects.
    fn model(header: &str, size: u64) -> Option<Option<(u64, u64)>> {
        let spec = header.strip_prefix("bytes=")?;
        let (a, b) = spec.split_once('-')?;
        let offsets: Vec<u64> = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
            (None, Some(n)) if a.is_empty() => (size.saturating_sub(n)..size).collect(),
            (Some(a), None) if b.is_empty() => (a..size).collect(),
            (Some(a), Some(b)) if a <= b => (a..=b).filter(|o| *o < size).collect(),
            _ => return None,
        };
        Some(offsets.first().map(|f| (*f, *offsets.last().unwrap())))
    }

    proptest! {
        #[test]
        fn a_range_selects_what_the_reference_model_selects(
            a in proptest::option::of(0u64..40),
            b in proptest::option::of(0u64..40),
            size in 0u64..30,
        ) {
            let header = format!(
                "bytes={}-{}",
                a.map(|v| v.to_string()).unwrap_or_default(),
                b.map(|v| v.to_string()).unwrap_or_default()
            );
            let got = parse_range(Some(&header), size);
            match model(&header, size) {
                None => prop_assert_eq!(got, RangeAnswer::Full),
                Some(None) => prop_assert_eq!(got, RangeAnswer::Unsatisfiable),
                Some(Some((first, last))) => {
                    prop_assert_eq!(got, RangeAnswer::Partial(ByteRange { first, last }))
                }
            }
        }

        #[test]
        fn metadata_written_by_a_client_reads_back(
            name in "[a-zA-Z0-9_é文][a-zA-Z0-9 ._é文()\"'-]{0,40}",
            kind in 0usize..4,
            keep in any::<bool>(),
        ) {
            let name = name.trim().to_string();
            prop_assume!(!name.is_empty());
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let kind = MediaKind::ALL[kind];
            let header = format!(
                "kind {},name {},keep_exif {}",
                b64(kind.as_str()),
                b64(&name),
                b64(if keep { "true" } else { "false" })
            );
            let m = parse_metadata(&header).unwrap();
            prop_assert_eq!(m.kind, kind);
            prop_assert_eq!(m.name, Some(name));
            prop_assert_eq!(m.keep_exif, keep);
        }

        #[test]
        fn any_change_to_a_link_breaks_its_signature(
            name in proptest::option::of("[a-z.]{1,12}"),
            exp in 0i64..i64::MAX,
            other_exp in 0i64..i64::MAX,
        ) {
            let key = LinkKey::new([9; 32]);
            let p = params(name.as_deref(), exp);
            let sig = key.sign(&p);
            prop_assert!(key.verify(&p, &sig));
            prop_assume!(other_exp != exp);
            prop_assert!(!key.verify(&params(name.as_deref(), other_exp), &sig));
        }
    }
}
