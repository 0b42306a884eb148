//! The image processing's story: every fixture is made here, the pictures
//! encoded with `image`, the Exif blocks and the HEIC container laid out by
//! hand.

use ::image::codecs::gif::GifEncoder;
use ::image::codecs::jpeg::JpegEncoder;
use ::image::codecs::png::PngEncoder;
use ::image::codecs::webp::WebPEncoder;
use ::image::metadata::Orientation;
use ::image::{ImageEncoder, RgbImage, RgbaImage};
use img_parts::jpeg::{Jpeg, JpegSegment, markers};
use img_parts::png::{Png, PngChunk};
use img_parts::riff::{RiffChunk, RiffContent};
use img_parts::webp::WebP;
use img_parts::{Bytes, ImageEXIF};
use proptest::prelude::*;

use super::*;

const WIDTH: u32 = 40;
const HEIGHT: u32 = 20;

/// The latitude 39° 54' 27.00" as the fixture's GPS IFD stores it (three
/// little-endian RATIONALs): found in a file, the location is still there.
const LATITUDE: [u8; 24] = [
    39, 0, 0, 0, 1, 0, 0, 0, 54, 0, 0, 0, 1, 0, 0, 0, 0x8c, 0x0a, 0, 0, 100, 0, 0, 0,
];

/// XMP as cameras and phones write it, with a location of its own.
const XMP: &[u8] = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><rdf:Description \
    exif:GPSLatitude='39,54.45N' exif:GPSLongitude='116,23.28E'/></rdf:RDF></x:xmpmeta>";

fn limits() -> ImageLimits {
    ImageLimits::default()
}

fn picture() -> RgbaImage {
    RgbaImage::from_fn(WIDTH, HEIGHT, |x, y| {
        ::image::Rgba([(x * 6) as u8, (y * 12) as u8, 128, 255])
    })
}

fn encode(format: ImageFormat) -> Vec<u8> {
    let rgba = picture();
    let rgb = RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let [r, g, b, _] = rgba.get_pixel(x, y).0;
        ::image::Rgb([r, g, b])
    });
    let mut out = Vec::new();
    match format {
        ImageFormat::Jpeg => JpegEncoder::new_with_quality(&mut out, 90)
            .write_image(&rgb, WIDTH, HEIGHT, ::image::ExtendedColorType::Rgb8)
            .unwrap(),
        ImageFormat::Png => PngEncoder::new(&mut out)
            .write_image(&rgba, WIDTH, HEIGHT, ::image::ExtendedColorType::Rgba8)
            .unwrap(),
        ImageFormat::Webp => WebPEncoder::new_lossless(&mut out)
            .write_image(&rgba, WIDTH, HEIGHT, ::image::ExtendedColorType::Rgba8)
            .unwrap(),
        ImageFormat::Gif => GifEncoder::new(&mut out)
            .encode(&rgba, WIDTH, HEIGHT, ::image::ExtendedColorType::Rgba8)
            .unwrap(),
        ImageFormat::Heic => return heic(WIDTH, HEIGHT, None, &exif_with_gps(1)),
    }
    out
}

/// A TIFF block (little-endian) as a camera writes it: IFD0 with the
/// Orientation and a pointer to a GPS IFD holding a latitude.
fn exif_with_gps(orientation: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"II\x2a\0");
    t.extend_from_slice(&8u32.to_le_bytes());
    // IFD0 at 8: 2 entries, 30 bytes; the GPS IFD follows at 38.
    t.extend_from_slice(&2u16.to_le_bytes());
    t.extend_from_slice(&0x0112u16.to_le_bytes());
    t.extend_from_slice(&3u16.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&orientation.to_le_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&0x8825u16.to_le_bytes());
    t.extend_from_slice(&4u16.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&38u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD at 38: LatitudeRef "N", Latitude at 68.
    t.extend_from_slice(&2u16.to_le_bytes());
    t.extend_from_slice(&1u16.to_le_bytes());
    t.extend_from_slice(&2u16.to_le_bytes());
    t.extend_from_slice(&2u32.to_le_bytes());
    t.extend_from_slice(b"N\0\0\0");
    t.extend_from_slice(&2u16.to_le_bytes());
    t.extend_from_slice(&5u16.to_le_bytes());
    t.extend_from_slice(&3u32.to_le_bytes());
    t.extend_from_slice(&68u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(t.len(), 68);
    t.extend_from_slice(&LATITUDE);
    t
}

/// `format`'s fixture carrying Exif (GPS and `orientation`) and XMP.
fn with_metadata(format: ImageFormat, orientation: u16) -> Vec<u8> {
    let plain = Bytes::from(encode(format));
    let exif = Bytes::from(exif_with_gps(orientation));
    let xmp = || Bytes::from([&b"http://ns.adobe.com/xap/1.0/\0"[..], XMP].concat());
    match format {
        ImageFormat::Jpeg => {
            let mut jpeg = Jpeg::from_bytes(plain).unwrap();
            jpeg.set_exif(Some(exif));
            jpeg.segments_mut()
                .insert(1, JpegSegment::new_with_contents(markers::APP1, xmp()));
            jpeg.segments_mut().insert(
                1,
                JpegSegment::new_with_contents(markers::COM, Bytes::from_static(b"Home")),
            );
            jpeg.encoder().bytes().to_vec()
        }
        ImageFormat::Png => {
            let mut png = Png::from_bytes(plain).unwrap();
            png.set_exif(Some(exif));
            let itxt = [&b"XML:com.adobe.xmp\0\0\0\0\0"[..], XMP].concat();
            png.chunks_mut()
                .insert(1, PngChunk::new(*b"iTXt", Bytes::from(itxt)));
            png.chunks_mut().insert(
                1,
                PngChunk::new(*b"tEXt", Bytes::from_static(b"Comment\0Home")),
            );
            png.encoder().bytes().to_vec()
        }
        ImageFormat::Webp => {
            let mut webp = WebP::from_bytes(plain).unwrap();
            webp.set_exif(Some(exif));
            webp.chunks_mut().push(RiffChunk::new(
                *b"XMP ",
                RiffContent::Data(Bytes::from_static(XMP)),
            ));
            // the XMP flag of VP8X, which img-parts leaves alone
            for chunk in webp.chunks_mut() {
                if chunk.id() == *b"VP8X"
                    && let RiffContent::Data(data) = chunk.content_mut()
                {
                    let mut flags = data.to_vec();
                    flags[0] |= 0b100;
                    *data = Bytes::from(flags);
                }
            }
            webp.encoder().bytes().to_vec()
        }
        ImageFormat::Gif => plain.to_vec(),
        ImageFormat::Heic => heic(WIDTH, HEIGHT, None, &exif_with_gps(orientation)),
    }
}

fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = (8 + body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let head = (u32::from(version) << 24) | flags;
    bx(kind, &[&head.to_be_bytes()[..], body].concat())
}

/// A minimal HEIC: `ftyp`, then `meta` (`hdlr`, `pitm`, `iinf` with an
/// `hvc1` item 1 and an `Exif` item 2, `iloc`, `iprp` with `ispe` and maybe
/// `irot` for item 1), then `mdat` holding both items' bytes.
fn heic(width: u32, height: u32, irot: Option<u8>, tiff: &[u8]) -> Vec<u8> {
    let coded = [0xAB; 64];
    let exif = [&0u32.to_be_bytes()[..], tiff].concat();
    let ftyp = bx(b"ftyp", b"heic\0\0\0\0mif1heic");
    let meta = |coded_at: u32, exif_at: u32| {
        let hdlr = full_box(b"hdlr", 0, 0, b"\0\0\0\0pict\0\0\0\0\0\0\0\0\0\0\0\0\0");
        let pitm = full_box(b"pitm", 0, 0, &1u16.to_be_bytes());
        let infe = |id: u16, kind: &[u8; 4]| {
            full_box(
                b"infe",
                2,
                0,
                &[&id.to_be_bytes()[..], &[0, 0], kind, b"\0"].concat(),
            )
        };
        let iinf = full_box(
            b"iinf",
            0,
            0,
            &[
                &2u16.to_be_bytes()[..],
                &infe(1, b"hvc1"),
                &infe(2, b"Exif"),
            ]
            .concat(),
        );
        let location = |id: u16, at: u32, len: usize| {
            [
                &id.to_be_bytes()[..],
                &0u16.to_be_bytes(), // data reference: this file
                &1u16.to_be_bytes(), // one extent
                &at.to_be_bytes(),
                &(len as u32).to_be_bytes(),
            ]
            .concat()
        };
        let iloc = full_box(
            b"iloc",
            0,
            0,
            &[
                &[0x44, 0x00][..], // 4-byte offsets and lengths, no base offset
                &2u16.to_be_bytes(),
                &location(1, coded_at, coded.len()),
                &location(2, exif_at, exif.len()),
            ]
            .concat(),
        );
        let mut ipco = full_box(
            b"ispe",
            0,
            0,
            &[width.to_be_bytes(), height.to_be_bytes()].concat(),
        );
        let mut associations = vec![1, 0x81]; // count, then ispe (essential)
        if let Some(angle) = irot {
            ipco.extend(bx(b"irot", &[angle]));
            associations = vec![2, 0x81, 0x82];
        }
        let ipma = full_box(
            b"ipma",
            0,
            0,
            &[&1u32.to_be_bytes()[..], &1u16.to_be_bytes(), &associations].concat(),
        );
        let iprp = bx(b"iprp", &[bx(b"ipco", &ipco), ipma].concat());
        full_box(b"meta", 0, 0, &[hdlr, pitm, iinf, iloc, iprp].concat())
    };
    let meta_len = meta(0, 0).len();
    let coded_at = (ftyp.len() + meta_len + 8) as u32;
    let exif_at = coded_at + coded.len() as u32;
    let mdat = bx(b"mdat", &[&coded[..], &exif].concat());
    [ftyp, meta(coded_at, exif_at), mdat].concat()
}

/// Runs [`process`] through real files: the answer, and what was written.
fn run(
    format: ImageFormat,
    bytes: &[u8],
    keep_metadata: bool,
    limits: &ImageLimits,
) -> (Result<Processed, ImageError>, Option<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::write(&input, bytes).unwrap();
    let answer = process(format, &input, &output, keep_metadata, limits);
    (answer, std::fs::read(&output).ok())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn stored_orientation(format: ImageFormat, stored: &[u8]) -> Option<Orientation> {
    let bytes = Bytes::copy_from_slice(stored);
    let exif = match format {
        ImageFormat::Jpeg => Jpeg::from_bytes(bytes).unwrap().exif(),
        ImageFormat::Png => Png::from_bytes(bytes).unwrap().exif(),
        ImageFormat::Webp => WebP::from_bytes(bytes).unwrap().exif(),
        ImageFormat::Gif | ImageFormat::Heic => None,
    }?;
    Orientation::from_exif_chunk(&exif)
}

const DECODABLE: [ImageFormat; 4] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::Webp,
    ImageFormat::Gif,
];
const ALL: [ImageFormat; 5] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::Webp,
    ImageFormat::Gif,
    ImageFormat::Heic,
];

#[test]
fn every_format_answers_its_width_and_height() {
    for format in ALL {
        let (answer, _) = run(format, &encode(format), false, &limits());
        let processed = answer.unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(
            (processed.width, processed.height),
            (WIDTH, HEIGHT),
            "{format:?}"
        );
    }
}

#[test]
fn a_heic_answers_the_size_of_its_primary_item_turned_by_its_rotation() {
    let tiff = exif_with_gps(1);
    let (answer, _) = run(
        ImageFormat::Heic,
        &heic(4032, 3024, None, &tiff),
        false,
        &limits(),
    );
    let processed = answer.unwrap();
    assert_eq!((processed.width, processed.height), (4032, 3024));
    assert!(processed.thumbnail.is_none());

    for (angle, size) in [(1, (3024, 4032)), (2, (4032, 3024)), (3, (3024, 4032))] {
        let file = heic(4032, 3024, Some(angle), &tiff);
        let processed = run(ImageFormat::Heic, &file, false, &limits()).0.unwrap();
        assert_eq!((processed.width, processed.height), size, "irot {angle}");
    }
}

#[test]
fn a_stored_picture_loses_its_location_and_keeps_its_orientation() {
    for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp] {
        let upload = with_metadata(format, 6);
        assert!(contains(&upload, &LATITUDE) && contains(&upload, b"GPSLatitude"));

        let (answer, stored) = run(format, &upload, false, &limits());
        let processed = answer.unwrap();
        let stored = stored.unwrap();
        assert!(
            !contains(&stored, &LATITUDE),
            "{format:?} keeps the Exif GPS"
        );
        assert!(
            !contains(&stored, b"GPSLatitude"),
            "{format:?} keeps the XMP"
        );
        assert!(!contains(&stored, b"Home"), "{format:?} keeps the comment");
        assert_eq!(
            stored_orientation(format, &stored),
            Some(Orientation::Rotate90),
            "{format:?}"
        );
        // Turned a quarter, as displayed.
        assert_eq!((processed.width, processed.height), (HEIGHT, WIDTH));
    }
}

#[test]
fn an_upright_picture_is_stored_with_no_exif_at_all() {
    for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp] {
        let stored = run(format, &with_metadata(format, 1), false, &limits())
            .1
            .unwrap();
        assert_eq!(stored_orientation(format, &stored), None, "{format:?}");
        assert!(!contains(&stored, b"Exif") && !contains(&stored, b"eXIf"));
    }
}

#[test]
fn a_stripped_webp_says_it_has_neither_exif_nor_xmp_unless_the_orientation_is_kept() {
    let stored = run(
        ImageFormat::Webp,
        &with_metadata(ImageFormat::Webp, 1),
        false,
        &limits(),
    )
    .1
    .unwrap();
    let webp = WebP::from_bytes(Bytes::from(stored)).unwrap();
    if let Some(vp8x) = webp.chunk_by_id(*b"VP8X") {
        let flags = vp8x.content().data().unwrap()[0];
        assert_eq!(flags & 0b1100, 0, "EXIF or XMP flag left set");
    }
    assert!(!webp.has_chunk(*b"EXIF") && !webp.has_chunk(*b"XMP "));
}

#[test]
fn stripping_leaves_every_pixel_as_it_was() {
    for format in DECODABLE {
        let upload = with_metadata(format, 1);
        let stored = run(format, &upload, false, &limits()).1.unwrap();
        let decode = |bytes: &[u8]| {
            ::image::load_from_memory(bytes)
                .unwrap_or_else(|e| panic!("{format:?}: {e}"))
                .to_rgba8()
        };
        assert_eq!(decode(&upload), decode(&stored), "{format:?}");
    }
}

#[test]
fn a_jpeg_is_stored_without_what_follows_its_end() {
    // Phones append further pictures (MPF previews, depth and gain maps,
    // each with its own Exif) and vendor trailers after the end marker.
    let mut upload = with_metadata(ImageFormat::Jpeg, 1);
    let picture_len = upload.len();
    upload.extend_from_slice(&with_metadata(ImageFormat::Jpeg, 1));
    let stored = run(ImageFormat::Jpeg, &upload, false, &limits()).1.unwrap();
    assert!(!contains(&stored, &LATITUDE));
    assert!(stored.len() < picture_len);
    assert_eq!(&stored[stored.len() - 2..], &[0xFF, 0xD9]);
}

#[test]
fn keeping_metadata_stores_the_very_bytes_uploaded() {
    for format in ALL {
        let upload = with_metadata(format, 6);
        let (answer, stored) = run(format, &upload, true, &limits());
        answer.unwrap();
        assert_eq!(stored.unwrap(), upload, "{format:?}");
    }
}

#[test]
fn a_stored_picture_processed_again_is_stored_unchanged() {
    for format in ALL {
        let (first, stored) = run(format, &with_metadata(format, 6), false, &limits());
        let (first, stored) = (first.unwrap(), stored.unwrap());
        let (second, again) = run(format, &stored, false, &limits());
        let second = second.unwrap();
        assert_eq!((second.width, second.height), (first.width, first.height));
        assert_eq!(again.unwrap(), stored, "{format:?}");
    }
}

#[test]
fn a_gif_is_stored_as_uploaded() {
    let upload = encode(ImageFormat::Gif);
    assert_eq!(
        run(ImageFormat::Gif, &upload, false, &limits()).1.unwrap(),
        upload
    );
}

#[test]
fn a_heic_exif_item_is_overwritten_in_place_and_nothing_else_moves() {
    let upload = with_metadata(ImageFormat::Heic, 6);
    let stored = run(ImageFormat::Heic, &upload, false, &limits()).1.unwrap();
    assert_eq!(stored.len(), upload.len());
    assert!(contains(&upload, &LATITUDE) && !contains(&stored, &LATITUDE));
    let changed: Vec<usize> = (0..upload.len())
        .filter(|&i| upload[i] != stored[i])
        .collect();
    let exif_at = upload.len() - exif_with_gps(6).len() - 4;
    assert!(
        changed.iter().all(|&i| i >= exif_at),
        "bytes outside Exif changed"
    );
    // What is left is a valid Exif block with no tags: offset 0, then TIFF.
    assert_eq!(
        &stored[exif_at..exif_at + 12],
        b"\0\0\0\0MM\0\x2a\0\0\0\x08"
    );
    assert!(stored[exif_at + 12..].iter().all(|&b| b == 0));
    // and it still reads as the same picture
    let processed = run(ImageFormat::Heic, &stored, false, &limits()).0.unwrap();
    assert_eq!((processed.width, processed.height), (WIDTH, HEIGHT));
}

#[test]
fn a_heic_whose_exif_shares_bytes_with_the_picture_is_refused() {
    let mut file = heic(WIDTH, HEIGHT, None, &exif_with_gps(1));
    // Point item 2 (Exif) at item 1's offset: zeroing it would wipe pixels.
    let iloc = file.windows(4).position(|w| w == b"iloc").unwrap();
    let entries = iloc + 4 + 4 + 2 + 2; // type, version/flags, sizes, count
    let coded_at: [u8; 4] = file[entries + 6..entries + 10].try_into().unwrap();
    file[entries + 14 + 6..entries + 14 + 10].copy_from_slice(&coded_at);
    let (answer, stored) = run(ImageFormat::Heic, &file, false, &limits());
    assert!(matches!(answer, Err(ImageError::Unreadable)));
    assert!(stored.is_none());
}

#[test]
fn the_thumbnail_is_a_jpeg_within_the_edge_turned_as_displayed() {
    let limits = ImageLimits {
        thumbnail_edge: 16,
        ..limits()
    };
    for format in DECODABLE {
        let upload = with_metadata(format, 6);
        let processed = run(format, &upload, false, &limits).0.unwrap();
        let thumbnail = processed.thumbnail.expect("a thumbnail");
        let decoded =
            ::image::load_from_memory_with_format(&thumbnail, ::image::ImageFormat::Jpeg).unwrap();
        assert!(decoded.width().max(decoded.height()) <= 16, "{format:?}");
        let turned = format != ImageFormat::Gif; // GIF has no Exif to turn it
        assert_eq!(decoded.height() > decoded.width(), turned, "{format:?}");
    }
}

#[test]
fn a_small_picture_is_not_blown_up_for_its_thumbnail() {
    let processed = run(
        ImageFormat::Png,
        &encode(ImageFormat::Png),
        false,
        &limits(),
    )
    .0
    .unwrap();
    let decoded = ::image::load_from_memory(&processed.thumbnail.unwrap()).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (WIDTH, HEIGHT));
}

#[test]
fn a_transparent_picture_is_thumbnailed_on_white() {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(&[0u8; 4 * 4 * 4], 4, 4, ::image::ExtendedColorType::Rgba8)
        .unwrap();
    let processed = run(ImageFormat::Png, &out, false, &limits()).0.unwrap();
    let decoded = ::image::load_from_memory(&processed.thumbnail.unwrap())
        .unwrap()
        .to_rgb8();
    assert!(decoded.pixels().all(|p| p.0.iter().all(|&c| c > 240)));
}

#[test]
fn no_thumbnail_is_made_at_edge_zero() {
    let limits = ImageLimits {
        thumbnail_edge: 0,
        ..limits()
    };
    let processed = run(
        ImageFormat::Jpeg,
        &encode(ImageFormat::Jpeg),
        false,
        &limits,
    )
    .0
    .unwrap();
    assert!(processed.thumbnail.is_none());
}

/// A PNG whose header claims `width` × `height` and whose pixel data is
/// garbage: decoding it would fail, so `TooManyPixels` proves the size was
/// refused before any decoding.
fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let chunk = |kind: &[u8; 4], body: &[u8]| {
        PngChunk::new(*kind, Bytes::copy_from_slice(body))
            .encoder()
            .bytes()
            .to_vec()
    };
    let ihdr = [
        &width.to_be_bytes()[..],
        &height.to_be_bytes(),
        &[8, 6, 0, 0, 0],
    ]
    .concat();
    [
        &b"\x89PNG\r\n\x1a\n"[..],
        &chunk(b"IHDR", &ihdr),
        &chunk(b"IDAT", &[0x55; 64]),
        &chunk(b"IEND", &[]),
    ]
    .concat()
}

#[test]
fn a_bomb_is_refused_from_its_header_before_any_decoding() {
    let (answer, stored) = run(
        ImageFormat::Png,
        &png_bomb(100_000, 100_000),
        false,
        &limits(),
    );
    assert!(
        matches!(answer, Err(ImageError::TooManyPixels { max: 50_000_000 })),
        "{answer:?}"
    );
    assert!(stored.is_none());

    // One pixel over the limit is over; the limit itself is not.
    let tight = ImageLimits {
        max_pixels: u64::from(WIDTH * HEIGHT) - 1,
        ..limits()
    };
    for format in ALL {
        let (answer, _) = run(format, &encode(format), false, &tight);
        assert!(
            matches!(answer, Err(ImageError::TooManyPixels { .. })),
            "{format:?}"
        );
    }
    let exact = ImageLimits {
        max_pixels: u64::from(WIDTH * HEIGHT),
        ..limits()
    };
    for format in ALL {
        run(format, &encode(format), false, &exact).0.unwrap();
    }
    let heic_bomb = heic(1 << 20, 1 << 20, None, &exif_with_gps(1));
    let (answer, _) = run(ImageFormat::Heic, &heic_bomb, false, &limits());
    assert!(matches!(answer, Err(ImageError::TooManyPixels { .. })));
}

#[test]
fn a_truncated_upload_is_unreadable_and_nothing_is_stored() {
    for format in ALL {
        let upload = with_metadata(format, 6);
        for cut in [0, 1, 10, upload.len() / 2, upload.len() - 10] {
            for keep in [false, true] {
                let (answer, stored) = run(format, &upload[..cut], keep, &limits());
                assert!(
                    matches!(answer, Err(ImageError::Unreadable)),
                    "{format:?} cut at {cut} of {}: {answer:?}",
                    upload.len()
                );
                assert!(stored.is_none());
            }
        }
    }
}

#[test]
fn a_picture_of_another_format_is_unreadable() {
    for format in ALL {
        for other in ALL.into_iter().filter(|&o| o != format) {
            let (answer, _) = run(format, &encode(other), false, &limits());
            assert!(
                matches!(answer, Err(ImageError::Unreadable)),
                "{other:?} as {format:?}"
            );
        }
    }
}

#[test]
fn a_missing_input_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let answer = process(
        ImageFormat::Png,
        &dir.path().join("absent"),
        &dir.path().join("out"),
        false,
        &limits(),
    );
    assert!(matches!(answer, Err(ImageError::Io(_))));
}

/// Runs [`process_bytes`] (no files: the proptests run it thousands of
/// times); only a panic fails.
fn never_panics(format: ImageFormat, bytes: &[u8], keep: bool) {
    let small = ImageLimits {
        max_pixels: 1 << 20,
        thumbnail_edge: 32,
    };
    let _ = process_bytes(format, &Bytes::copy_from_slice(bytes), keep, &small);
}

fn any_format() -> impl Strategy<Value = ImageFormat> {
    prop::sample::select(ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(
        format in any_format(),
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        keep in any::<bool>(),
    ) {
        never_panics(format, &bytes, keep);
    }

    #[test]
    fn a_valid_picture_cut_short_or_with_bytes_changed_never_panics(
        format in any_format(),
        cut in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        keep in any::<bool>(),
    ) {
        let mut bytes = with_metadata(format, 6);
        let len = bytes.len();
        for (at, value) in edits {
            bytes[at.index(len)] = value;
        }
        bytes.truncate(cut.index(len + 1));
        never_panics(format, &bytes, keep);
    }

    #[test]
    fn a_valid_picture_with_garbage_after_it_never_panics(
        format in any_format(),
        tail in prop::collection::vec(any::<u8>(), 1..256),
    ) {
        let mut bytes = with_metadata(format, 3);
        bytes.extend_from_slice(&tail);
        never_panics(format, &bytes, false);
    }
}

/// The cost of one 12-megapixel JPEG, as the media room pays it: run with
/// `cargo test --release -p superapp-media --lib twelve_megapixel -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a test: run it by name in release mode"]
fn twelve_megapixel_jpeg_thumbnail_time_and_peak_memory() {
    let (width, height) = (4000u32, 3000u32);
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jpg"), dir.path().join("out.jpg"));
    {
        // A photo-like picture: smooth gradients with fine texture, so the
        // entropy data is about a camera's size rather than trivially small.
        let picture = RgbImage::from_fn(width, height, |x, y| {
            let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 27;
            ::image::Rgb([
                ((x / 16) as u8).wrapping_add(noise as u8),
                ((y / 12) as u8).wrapping_add(noise as u8),
                ((x + y) / 28) as u8,
            ])
        });
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&picture)
            .unwrap();
        let mut with_exif = Jpeg::from_bytes(Bytes::from(jpeg)).unwrap();
        with_exif.set_exif(Some(Bytes::from(exif_with_gps(6))));
        std::fs::write(&input, with_exif.encoder().bytes()).unwrap();
    }
    let status = |field: &str| -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // Resets the peak (VmHWM) to the current resident size (Linux).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status("VmRSS:");
    let started = std::time::Instant::now();
    let processed = process(ImageFormat::Jpeg, &input, &output, false, &limits()).unwrap();
    let elapsed = started.elapsed();
    let peak = status("VmHWM:");
    let size = std::fs::metadata(&input).unwrap().len();
    println!(
        "12 MP JPEG ({} bytes, {}x{}): process {:.0} ms, peak resident +{} MiB over {} MiB, \
         thumbnail {} bytes",
        size,
        processed.width,
        processed.height,
        elapsed.as_secs_f64() * 1000.0,
        (peak.saturating_sub(before)) / 1024,
        before / 1024,
        processed.thumbnail.map_or(0, |t| t.len()),
    );
}
