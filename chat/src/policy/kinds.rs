//! Message kinds' rules as pure functions (docs/protocol.md §2.6): what a
//! body a client sends must hold ([`check_body`]), which media it
//! references and of what kind ([`media_refs`]), whether the objects fit and
//! what the server writes from them ([`apply_media`]), and the text shown
//! by a client that does not know a kind ([`fallback`]). No I/O.
//!
//! Invariants: a body that passes [`check_body`] holds no value the server
//! fills (sizes, dimensions, a card's name and avatar, the fallback): those
//! are the server's to write, from the media room's facts and the account
//! room's answer, never the client's word. `special` is written only by the
//! server: a client's is refused.

use superapp_proto::v1::MessageBody;
use superapp_proto::v1::message_body::Content;

use super::MAX_TEXT_BYTES;
use crate::ChatError;
use crate::model::{MediaFacts, MediaKind};

/// A media id: the lowercase hex SHA-256 of the stored object.
pub const MEDIA_ID_CHARS: usize = 64;
/// The longest voice message: 10 minutes. WeChat's recorder stops at one
/// minute; the bound leaves room for voice recorded by other clients.
pub const MAX_VOICE_MS: u32 = 10 * 60 * 1000;
/// The longest video a message names: one hour. The duration is the
/// client's word (the server does not parse video), shown before playing;
/// the bound keeps it plausible. What binds a video is its size, which the
/// media room limits and the server fills here.
pub const MAX_VIDEO_MS: u32 = 60 * 60 * 1000;
/// A file's name, in bytes of UTF-8 (as most file systems allow).
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// A place's name and address, each, in bytes of UTF-8.
pub const MAX_PLACE_BYTES: usize = 256;

/// Checks a body a client sends and answers it with what the server fills
/// cleared: a text holds 1 to [`MAX_TEXT_BYTES`] bytes; media ids are
/// [`MEDIA_ID_CHARS`] lowercase hex digits (a video's poster is required);
/// a voice lasts 1 ms to [`MAX_VOICE_MS`], a video 1 ms to
/// [`MAX_VIDEO_MS`]; a file's name passes [`file_name_ok`]; a location's
/// coordinates are finite and on the globe, its name and address at most
/// [`MAX_PLACE_BYTES`] without control characters; a contact card names a
/// user. `special` is refused: only the server writes it.
pub fn check_body(body: Option<MessageBody>) -> Result<MessageBody, ChatError> {
    let mut body = body.ok_or(ChatError::EmptyBody)?;
    match &mut body.content {
        None => return Err(ChatError::EmptyBody),
        Some(Content::Text(text)) if text.is_empty() => return Err(ChatError::EmptyBody),
        Some(Content::Text(text)) if text.len() > MAX_TEXT_BYTES => {
            return Err(ChatError::BodyTooLarge {
                max: MAX_TEXT_BYTES,
            });
        }
        Some(Content::Text(_)) => {}
        Some(Content::Image(image)) => {
            check_media_id(&image.media_id)?;
            (image.width, image.height, image.size) = (0, 0, 0);
        }
        Some(Content::Voice(voice)) => {
            check_media_id(&voice.media_id)?;
            check_duration(voice.duration_ms, MAX_VOICE_MS)?;
            voice.size = 0;
        }
        Some(Content::Video(video)) => {
            check_media_id(&video.media_id)?;
            check_media_id(&video.poster_media_id)?;
            check_duration(video.duration_ms, MAX_VIDEO_MS)?;
            (video.width, video.height, video.size) = (0, 0, 0);
        }
        Some(Content::File(file)) => {
            check_media_id(&file.media_id)?;
            if !file_name_ok(&file.name) {
                return Err(ChatError::Invalid {
                    code: "invalid_file_name",
                    reason: "a file name is 1 to 255 bytes, not . or .., without /, \\, control or direction-changing characters",
                });
            }
            file.size = 0;
        }
        Some(Content::Location(place)) => {
            let fine = place.latitude.is_finite()
                && place.longitude.is_finite()
                && (-90.0..=90.0).contains(&place.latitude)
                && (-180.0..=180.0).contains(&place.longitude)
                && place_text_ok(&place.name)
                && place_text_ok(&place.address);
            if !fine {
                return Err(ChatError::Invalid {
                    code: "invalid_location",
                    reason: "latitude -90 to 90, longitude -180 to 180; name and address at most 256 bytes without control characters",
                });
            }
        }
        Some(Content::ContactCard(card)) => {
            if card.user_id == 0 {
                return Err(ChatError::Invalid {
                    code: "invalid_contact_card",
                    reason: "a contact card names a user",
                });
            }
            card.display_name.clear();
            card.avatar_url.clear();
        }
        Some(Content::Special(_)) => return Err(ChatError::KindNotAllowed),
    }
    body.fallback.clear();
    Ok(body)
}

/// [`MEDIA_ID_CHARS`] lowercase hex digits.
pub fn media_id_ok(id: &str) -> bool {
    id.len() == MEDIA_ID_CHARS && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_media_id(id: &str) -> Result<(), ChatError> {
    if media_id_ok(id) {
        Ok(())
    } else {
        Err(ChatError::Invalid {
            code: "invalid_media_id",
            reason: "a media id is 64 lowercase hex digits (the SHA-256 of the object)",
        })
    }
}

fn check_duration(ms: u32, max: u32) -> Result<(), ChatError> {
    if (1..=max).contains(&ms) {
        Ok(())
    } else {
        Err(ChatError::Invalid {
            code: "invalid_duration",
            reason: "a voice lasts 1 ms to 10 minutes, a video 1 ms to 1 hour",
        })
    }
}

/// A file name that is safe to offer when saving: 1 to
/// [`MAX_FILE_NAME_BYTES`] bytes, not `.` or `..`, without path separators
/// (`/`, `\`), control characters (NUL among them), or the characters that
/// change the direction of text (U+202A to U+202E, U+2066 to U+2069), with
/// which `photo\u{202E}gpj.exe` shows as `photoexe.jpg`.
pub fn file_name_ok(name: &str) -> bool {
    (1..=MAX_FILE_NAME_BYTES).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.chars().any(|c| {
            matches!(c, '/' | '\\' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
                || c.is_control()
        })
}

fn place_text_ok(text: &str) -> bool {
    text.len() <= MAX_PLACE_BYTES && !text.chars().any(char::is_control)
}

/// One media object a body references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaRef<'a> {
    pub id: &'a str,
    /// The kind the object must be; None for a file, which may be anything.
    pub wanted: Option<MediaKind>,
    /// A file's name, offered when it is saved.
    pub name: Option<&'a str>,
}

/// The media a body references, in a fixed order: an image's, a voice's, a
/// video's then its poster's, a file's; none for the other kinds.
pub fn media_refs(body: &MessageBody) -> Vec<MediaRef<'_>> {
    let one = |id, wanted| MediaRef {
        id,
        wanted,
        name: None,
    };
    match &body.content {
        Some(Content::Image(image)) => vec![one(&image.media_id, Some(MediaKind::Image))],
        Some(Content::Voice(voice)) => vec![one(&voice.media_id, Some(MediaKind::Voice))],
        Some(Content::Video(video)) => vec![
            one(&video.media_id, Some(MediaKind::Video)),
            one(&video.poster_media_id, Some(MediaKind::Image)),
        ],
        Some(Content::File(file)) => vec![MediaRef {
            id: &file.media_id,
            wanted: None,
            name: Some(&file.name),
        }],
        _ => Vec::new(),
    }
}

/// Given the facts of each of [`media_refs`] in order (None for an object
/// the sender may not use), whether the body may be sent: the first
/// reference the sender may not use answers `media_refused`, the first of
/// another kind than its place wants `media_kind_mismatch`. Once it may,
/// writes the facts into the body (size, and a picture's dimensions), in
/// place of whatever the client said.
pub fn apply_media(body: &mut MessageBody, facts: &[Option<MediaFacts>]) -> Result<(), ChatError> {
    let refs = media_refs(body);
    if facts.len() != refs.len() {
        // The port answers one entry per id asked; another count is its fault.
        return Err(ChatError::Dependency(format!(
            "the media library answered {} facts for {} ids",
            facts.len(),
            refs.len()
        )));
    }
    let mut known = Vec::with_capacity(facts.len());
    for (reference, facts) in refs.iter().zip(facts) {
        let facts = facts.ok_or(ChatError::MediaRefused)?;
        if reference.wanted.is_some_and(|kind| kind != facts.kind) {
            return Err(ChatError::MediaKindMismatch);
        }
        known.push(facts);
    }
    let Some(first) = known.first() else {
        return Ok(());
    };
    match &mut body.content {
        Some(Content::Image(image)) => {
            (image.width, image.height, image.size) = (first.width, first.height, first.size);
        }
        Some(Content::Voice(voice)) => voice.size = first.size,
        Some(Content::Video(video)) => {
            (video.width, video.height, video.size) = (first.width, first.height, first.size);
        }
        Some(Content::File(file)) => file.size = first.size,
        _ => {}
    }
    Ok(())
}

/// The text a client shows for a kind it does not know, which the server
/// stores in every body but a text's (docs/protocol.md §2.6):
///
/// | kind | fallback |
/// |---|---|
/// | text | (none) |
/// | image | `[Image]` |
/// | voice | `[Voice 0:12]` |
/// | video | `[Video 1:05]` (`[Video 1:00:00]` from an hour) |
/// | file | `[File] report.pdf` |
/// | location | `[Location] name`, else the address, else `[Location]` |
/// | contact card | `[Contact card] display name` |
/// | special | the text its writer gives, kept as it is |
///
/// Durations are rounded to the nearest second, and a message under half a
/// second shows one.
pub fn fallback(body: &MessageBody) -> String {
    let labelled = |label: &str, text: &str| {
        if text.is_empty() {
            format!("[{label}]")
        } else {
            format!("[{label}] {text}")
        }
    };
    match &body.content {
        None | Some(Content::Text(_)) => String::new(),
        Some(Content::Image(_)) => "[Image]".to_owned(),
        Some(Content::Voice(voice)) => format!("[Voice {}]", clock(voice.duration_ms)),
        Some(Content::Video(video)) => format!("[Video {}]", clock(video.duration_ms)),
        Some(Content::File(file)) => labelled("File", &file.name),
        Some(Content::Location(place)) => {
            let text = if place.name.is_empty() {
                &place.address
            } else {
                &place.name
            };
            labelled("Location", text)
        }
        Some(Content::ContactCard(card)) => labelled("Contact card", &card.display_name),
        Some(Content::Special(_)) => body.fallback.clone(),
    }
}

/// `m:ss`, or `h:mm:ss` from an hour: rounded to the nearest second, at least one.
fn clock(ms: u32) -> String {
    let secs = (ms.saturating_add(500) / 1000).max(1);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use superapp_proto::v1::{ContactCard, File, Image, Location, Special, Video, Voice};

    use super::*;

    fn body(content: Content) -> Option<MessageBody> {
        Some(MessageBody {
            content: Some(content),
            fallback: String::new(),
        })
    }

    fn id(c: char) -> String {
        c.to_string().repeat(MEDIA_ID_CHARS)
    }

    fn code(result: Result<MessageBody, ChatError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(ChatError::Invalid { code, .. }) => code,
            Err(ChatError::KindNotAllowed) => "kind_not_allowed",
            Err(ChatError::EmptyBody) => "empty_body",
            Err(ChatError::BodyTooLarge { .. }) => "body_too_large",
            Err(other) => panic!("{other:?}"),
        }
    }

    fn voice(ms: u32) -> Content {
        Content::Voice(Voice {
            media_id: id('a'),
            duration_ms: ms,
            size: 0,
        })
    }

    fn video(ms: u32, poster: String) -> Content {
        Content::Video(Video {
            media_id: id('b'),
            duration_ms: ms,
            poster_media_id: poster,
            ..Video::default()
        })
    }

    fn file(name: &str) -> Content {
        Content::File(File {
            media_id: id('c'),
            name: name.into(),
            size: 0,
        })
    }

    fn place(latitude: f64, longitude: f64, name: &str) -> Content {
        Content::Location(Location {
            latitude,
            longitude,
            name: name.into(),
            address: String::new(),
        })
    }

    #[test]
    fn each_kind_a_client_sends_is_checked_with_its_own_code() {
        let image = |media_id: String| {
            Content::Image(Image {
                media_id,
                ..Image::default()
            })
        };
        assert_eq!(code(check_body(body(image(id('0'))))), "ok");
        for bad in [
            id('A'),
            id('g'),
            "ab".into(),
            String::new(),
            format!("{}0", id('a')),
        ] {
            assert_eq!(code(check_body(body(image(bad)))), "invalid_media_id");
        }
        assert_eq!(code(check_body(body(voice(1)))), "ok");
        assert_eq!(code(check_body(body(voice(MAX_VOICE_MS)))), "ok");
        assert_eq!(code(check_body(body(voice(0)))), "invalid_duration");
        assert_eq!(
            code(check_body(body(voice(MAX_VOICE_MS + 1)))),
            "invalid_duration"
        );
        assert_eq!(code(check_body(body(video(MAX_VIDEO_MS, id('d'))))), "ok");
        assert_eq!(
            code(check_body(body(video(MAX_VIDEO_MS + 1, id('d'))))),
            "invalid_duration"
        );
        assert_eq!(
            code(check_body(body(video(5, String::new())))),
            "invalid_media_id",
            "a video's poster is required"
        );
        assert_eq!(code(check_body(body(file("report.pdf")))), "ok");
        assert_eq!(code(check_body(body(file(&"é".repeat(127))))), "ok");
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\0b",
            "a\nb",
            "photo\u{202E}gpj.exe",
            &"x".repeat(256),
        ] {
            assert_eq!(
                code(check_body(body(file(bad)))),
                "invalid_file_name",
                "{bad:?}"
            );
        }
        assert_eq!(code(check_body(body(place(90.0, -180.0, "Pole")))), "ok");
        for (lat, lon) in [
            (90.1, 0.0),
            (0.0, 180.5),
            (f64::NAN, 0.0),
            (0.0, f64::INFINITY),
        ] {
            assert_eq!(
                code(check_body(body(place(lat, lon, "")))),
                "invalid_location"
            );
        }
        assert_eq!(
            code(check_body(body(place(0.0, 0.0, &"x".repeat(257))))),
            "invalid_location"
        );
        let card = |user_id| {
            Content::ContactCard(ContactCard {
                user_id,
                ..ContactCard::default()
            })
        };
        assert_eq!(code(check_body(body(card(7)))), "ok");
        assert_eq!(code(check_body(body(card(0)))), "invalid_contact_card");
        let special = Content::Special(Special {
            r#type: "call".into(),
            value: Vec::new(),
        });
        assert_eq!(code(check_body(body(special))), "kind_not_allowed");
    }

    #[test]
    fn what_the_server_fills_is_never_the_client_s_word() {
        let claimed = Content::Image(Image {
            media_id: id('a'),
            width: 9_999,
            height: 9_999,
            size: 1,
        });
        let mut sent = body(claimed).unwrap();
        sent.fallback = "[Free money]".into();
        let checked = check_body(Some(sent)).unwrap();
        assert_eq!(
            checked.content,
            Some(Content::Image(Image {
                media_id: id('a'),
                ..Image::default()
            }))
        );
        assert!(checked.fallback.is_empty());
        let card = Content::ContactCard(ContactCard {
            user_id: 3,
            display_name: "Bank".into(),
            avatar_url: "https://evil.example/a.png".into(),
        });
        let checked = check_body(body(card)).unwrap();
        assert_eq!(
            checked.content,
            Some(Content::ContactCard(ContactCard {
                user_id: 3,
                ..ContactCard::default()
            }))
        );
    }

    #[test]
    fn media_must_be_usable_and_of_the_kind_its_place_wants() {
        let facts = |kind, size| {
            Some(MediaFacts {
                kind,
                size,
                width: 640,
                height: 360,
            })
        };
        let mut sent = check_body(body(video(65_000, id('d')))).unwrap();
        let refs: Vec<_> = media_refs(&sent)
            .iter()
            .map(|r| (r.id.to_owned(), r.wanted))
            .collect();
        assert_eq!(
            refs,
            [
                (id('b'), Some(MediaKind::Video)),
                (id('d'), Some(MediaKind::Image))
            ]
        );
        let refused = apply_media(&mut sent.clone(), &[facts(MediaKind::Video, 5), None]);
        assert!(matches!(refused, Err(ChatError::MediaRefused)));
        let swapped = [facts(MediaKind::Image, 5), facts(MediaKind::Video, 5)];
        assert!(matches!(
            apply_media(&mut sent.clone(), &swapped),
            Err(ChatError::MediaKindMismatch)
        ));
        apply_media(
            &mut sent,
            &[facts(MediaKind::Video, 5), facts(MediaKind::Image, 2)],
        )
        .unwrap();
        let Some(Content::Video(filled)) = &sent.content else {
            panic!("{sent:?}");
        };
        assert_eq!((filled.width, filled.height, filled.size), (640, 360, 5));
        // A file may be anything, an image included.
        let mut sent = check_body(body(file("a.png"))).unwrap();
        apply_media(&mut sent, &[facts(MediaKind::Image, 77)]).unwrap();
        assert!(matches!(
            sent.content,
            Some(Content::File(File { size: 77, .. }))
        ));
        // Kinds without media need no facts.
        let mut sent = check_body(body(place(1.0, 2.0, "x"))).unwrap();
        assert!(apply_media(&mut sent, &[]).is_ok());
    }

    #[test]
    fn every_kind_but_text_has_a_fallback_from_the_table() {
        let fb = |content| fallback(&body(content).unwrap());
        assert_eq!(fb(Content::Text("hi".into())), "");
        assert_eq!(
            fb(Content::Image(Image {
                media_id: id('a'),
                ..Image::default()
            })),
            "[Image]"
        );
        assert_eq!(fb(voice(12_000)), "[Voice 0:12]");
        assert_eq!(fb(voice(12_499)), "[Voice 0:12]");
        assert_eq!(fb(voice(12_500)), "[Voice 0:13]");
        assert_eq!(fb(voice(1)), "[Voice 0:01]");
        assert_eq!(fb(voice(MAX_VOICE_MS)), "[Voice 10:00]");
        assert_eq!(fb(video(65_000, id('d'))), "[Video 1:05]");
        assert_eq!(fb(video(MAX_VIDEO_MS, id('d'))), "[Video 1:00:00]");
        assert_eq!(fb(file("a.pdf")), "[File] a.pdf");
        assert_eq!(fb(place(1.0, 2.0, "Cafe")), "[Location] Cafe");
        let addressed = Content::Location(Location {
            address: "1 Main St".into(),
            ..Location::default()
        });
        assert_eq!(fb(addressed), "[Location] 1 Main St");
        assert_eq!(fb(place(1.0, 2.0, "")), "[Location]");
        let card = Content::ContactCard(ContactCard {
            user_id: 3,
            display_name: "Ann".into(),
            avatar_url: String::new(),
        });
        assert_eq!(fb(card), "[Contact card] Ann");
        let special = MessageBody {
            content: Some(Content::Special(Special {
                r#type: "call".into(),
                value: vec![1],
            })),
            fallback: "[Call] 1:05".into(),
        };
        assert_eq!(fallback(&special), "[Call] 1:05");
    }

    #[test]
    fn a_page_counts_other_kinds_by_their_encoded_size_and_still_cuts_at_its_budget() {
        use prost::Message as _;

        use crate::policy::{MAX_PAGE_BODY_BYTES, content_bytes, page_cut};
        // The largest body a client may send of a kind without text.
        let mut largest = check_body(body(Content::Location(Location {
            latitude: -89.5,
            longitude: 179.5,
            name: "n".repeat(MAX_PLACE_BYTES),
            address: "a".repeat(MAX_PLACE_BYTES),
        })))
        .unwrap();
        largest.fallback = fallback(&largest);
        let size = content_bytes(&largest);
        assert_eq!(size, largest.encoded_len());
        assert!(size < 1_024, "{size}");
        let fit = MAX_PAGE_BODY_BYTES / size;
        assert_eq!(page_cut(std::iter::repeat_n(size, fit)), None);
        assert_eq!(page_cut(std::iter::repeat_n(size, fit + 1)), Some(fit));
    }

    /// The rules of a location and of a file name, written again apart.
    mod model {
        // Comparisons, not ranges: spelled apart from the rule under test.
        #[allow(clippy::manual_range_contains)]
        pub fn location_ok(lat: f64, lon: f64, name: &str) -> bool {
            lat >= -90.0
                && lat <= 90.0
                && lon >= -180.0
                && lon <= 180.0
                && name.len() <= 256
                && name.chars().all(|c| !c.is_control())
        }

        pub fn file_name_ok(name: &str) -> bool {
            const BAD: &[char] = &[
                '/', '\\', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}',
                '\u{2067}', '\u{2068}', '\u{2069}',
            ];
            !name.is_empty()
                && name.len() <= 255
                && name != "."
                && name != ".."
                && name.chars().all(|c| {
                    !BAD.contains(&c) && (c as u32 >= 0x20) && !(0x7f..0xa0).contains(&(c as u32))
                })
        }
    }

    fn coordinate() -> impl Strategy<Value = f64> {
        prop_oneof![
            -200.0..200.0f64,
            Just(90.0),
            Just(-90.0),
            Just(180.0),
            Just(-180.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
        ]
    }

    proptest! {
        #[test]
        fn locations_are_taken_exactly_when_on_the_globe(
            lat in coordinate(), lon in coordinate(), name in "[a-zé\\n\\t ]{0,3}", pad in 0usize..300,
        ) {
            let name = format!("{}{name}", "x".repeat(pad));
            let taken = check_body(body(place(lat, lon, &name))).is_ok();
            prop_assert_eq!(taken, model::location_ok(lat, lon, &name));
        }

        #[test]
        fn file_names_are_taken_exactly_when_safe_to_save(
            name in "[a-z.é/\\\\\u{0}\u{7}\u{85}\u{202E}\u{2068} ]{0,6}", pad in prop_oneof![Just(0usize), 240usize..260],
        ) {
            let name = format!("{}{name}", "n".repeat(pad));
            let checked = check_body(body(file(&name)));
            prop_assert_eq!(checked.is_ok(), model::file_name_ok(&name));
            if let Ok(checked) = checked {
                prop_assert_eq!(fallback(&checked), format!("[File] {name}"));
            }
        }

        #[test]
        fn media_ids_are_exactly_64_lowercase_hex_digits(id in "[0-9a-fA-Fg]{62,66}") {
            let image = Content::Image(Image { media_id: id.clone(), ..Image::default() });
            let want = id.len() == 64 && id.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
            prop_assert_eq!(check_body(body(image)).is_ok(), want);
        }

        #[test]
        fn a_voice_s_fallback_shows_its_length_to_the_nearest_second(ms in 1u32..=MAX_VOICE_MS) {
            let shown = fallback(&check_body(body(voice(ms))).unwrap());
            let inner = shown.strip_prefix("[Voice ").and_then(|s| s.strip_suffix(']')).unwrap();
            let (m, s) = inner.split_once(':').unwrap();
            let secs = m.parse::<u32>().unwrap() * 60 + s.parse::<u32>().unwrap();
            prop_assert_eq!(s.len(), 2);
            prop_assert!(secs >= 1);
            prop_assert!((i64::from(secs) * 1000 - i64::from(ms)).abs() <= 500 || (secs == 1 && ms < 500));
        }
    }
}
