//! The containers of JPEG, PNG, WebP and GIF read and rewritten without
//! decoding: the size they declare, whether they are whole, and their
//! metadata taken out without touching the picture:
//! segments and chunks are dropped or kept whole (through `img-parts`), the
//! compressed pixels are copied byte for byte.
//!
//! What is kept is an allow list of what a viewer needs to show the picture
//! right (colour profile, colour transform, transparency, gamma, animation);
//! everything else goes, because location hides in more places than Exif
//! (XMP, IPTC in Photoshop blocks, C2PA manifests, vendor segments, text
//! chunks). The Orientation is written back as a minimal Exif block holding
//! that one tag, so a photo taken sideways still shows upright.

use ::image::metadata::Orientation;
use img_parts::jpeg::{Jpeg, JpegSegment, markers};
use img_parts::png::Png;
use img_parts::riff::RiffContent;
use img_parts::webp::WebP;
use img_parts::{Bytes, ImageEXIF};

use super::ImageFormat;

/// The bytes to store for `bytes` of `format`, with `orientation` (read by
/// the decoder from the Exif about to be dropped) written back when it is
/// not the identity. `None`: the container does not parse. GIF passes
/// through: it has no Exif; docs/architecture.md §23 says what it may carry.
pub(super) fn strip(format: ImageFormat, bytes: &Bytes, orientation: Orientation) -> Option<Bytes> {
    let exif = minimal_exif(orientation);
    let input = bytes.clone();
    let out = match format {
        ImageFormat::Jpeg => jpeg(input, exif)?,
        ImageFormat::Png => png(input, exif)?,
        ImageFormat::Webp => webp(input, exif)?,
        ImageFormat::Gif | ImageFormat::Heic => input,
    };
    Some(out)
}

/// The width and height the container declares, from the JPEG frame
/// header, the PNG `IHDR`, the WebP `VP8X` / bitstream header or the GIF
/// logical screen; `None` when that much does not parse.
pub(super) fn declared_size(format: ImageFormat, bytes: &Bytes) -> Option<(u32, u32)> {
    let input = || bytes.clone();
    match format {
        ImageFormat::Jpeg => Jpeg::from_bytes(input())
            .ok()?
            .dimensions()
            .map(|(w, h)| (u32::from(w), u32::from(h))),
        ImageFormat::Png => Png::from_bytes(input()).ok()?.dimensions(),
        ImageFormat::Webp => WebP::from_bytes(input()).ok()?.dimensions(),
        ImageFormat::Gif => {
            // "GIF87a" / "GIF89a", then the screen's width and height (LE)
            if !bytes.starts_with(b"GIF87a") && !bytes.starts_with(b"GIF89a") {
                return None;
            }
            let screen = bytes.get(6..10)?;
            let width = u16::from_le_bytes([screen[0], screen[1]]);
            let height = u16::from_le_bytes([screen[2], screen[3]]);
            Some((u32::from(width), u32::from(height)))
        }
        ImageFormat::Heic => None,
    }
}

/// A TIFF block (the payload of Exif, without the `Exif\0\0` prefix) holding
/// only the Orientation tag, or `None` for the identity, which needs no tag.
pub(super) fn minimal_exif(orientation: Orientation) -> Option<Bytes> {
    let value = u16::from(orientation.to_exif());
    if value == 1 {
        return None;
    }
    let mut tiff = Vec::with_capacity(26);
    tiff.extend_from_slice(b"MM\0\x2a"); // big-endian TIFF
    tiff.extend_from_slice(&8u32.to_be_bytes()); // IFD0 right after the header
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // one value
    tiff.extend_from_slice(&value.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // the value's field is 4 bytes
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no IFD1
    Some(Bytes::from(tiff))
}

fn jpeg(input: Bytes, exif: Option<Bytes>) -> Option<Bytes> {
    let mut jpeg = Jpeg::from_bytes(input).ok()?;
    let segments = jpeg.segments_mut();
    segments.retain(jpeg_segment_kept);
    // The first scan's "entropy" holds the rest of the file: later scans,
    // the end marker, and whatever follows it (the other pictures an MPF
    // segment lists, such as previews and depth or gain maps with Exif of
    // their own, and vendor trailers). Only the primary picture is kept.
    if let Some(position) = segments.iter().position(JpegSegment::has_entropy) {
        let sos = &segments[position];
        let entropy = entropy(sos);
        if let Some(end) = end_of_picture(&entropy) {
            segments[position] = JpegSegment::new_with_entropy(
                sos.marker(),
                sos.contents().clone(),
                entropy.slice(..end),
            );
        }
    }
    jpeg.set_exif(exif);
    Some(jpeg.encoder().bytes())
}

/// Whether the container runs to its end: a JPEG to the end-of-image
/// marker of its primary picture, a PNG to `IEND`, a WebP to the size its
/// RIFF header declares, a GIF to its trailer. The decoders read the first
/// picture only and draw one cut short in its scan data without complaint,
/// so an upload cut short is caught here instead.
pub(super) fn is_whole(format: ImageFormat, bytes: &Bytes) -> bool {
    match format {
        ImageFormat::Jpeg => Jpeg::from_bytes(bytes.clone()).is_ok_and(|jpeg| {
            jpeg.segments()
                .iter()
                .find(|segment| segment.has_entropy())
                .is_some_and(|sos| end_of_picture(&entropy(sos)).is_some())
        }),
        ImageFormat::Png => Png::from_bytes(bytes.clone())
            .is_ok_and(|png| png.chunks().last().is_some_and(|c| c.kind() == *b"IEND")),
        ImageFormat::Webp => {
            let declared = bytes
                .get(4..8)
                .map(|size| u32::from_le_bytes([size[0], size[1], size[2], size[3]]));
            declared.is_some_and(|size| u64::from(size) + 8 <= bytes.len() as u64)
                && WebP::from_bytes(bytes.clone()).is_ok()
        }
        ImageFormat::Gif => gif_is_whole(bytes),
        ImageFormat::Heic => true,
    }
}

/// Walks a GIF's blocks to its trailer (0x3B).
fn gif_is_whole(bytes: &[u8]) -> bool {
    // Data sub-blocks: a length byte then that many bytes, until a 0 length.
    fn skip_sub_blocks(bytes: &[u8], mut at: usize) -> Option<usize> {
        loop {
            let len = usize::from(*bytes.get(at)?);
            at += 1;
            if len == 0 {
                return Some(at);
            }
            at += len;
        }
    }
    // A colour table of 3 · 2^(n+1) bytes follows when the flags' top bit is set.
    let table = |flags: u8| {
        if flags & 0x80 != 0 {
            3 << ((flags & 7) + 1)
        } else {
            0
        }
    };
    let Some(&screen_flags) = bytes.get(10) else {
        return false;
    };
    let mut at = 13 + table(screen_flags);
    loop {
        let Some(&introducer) = bytes.get(at) else {
            return false;
        };
        at = match introducer {
            0x3B => return true,
            // extension: a label, then sub-blocks
            0x21 => match skip_sub_blocks(bytes, at + 2) {
                Some(next) => next,
                None => return false,
            },
            // image: a 9-byte descriptor, maybe a colour table, the LZW code
            // size, then sub-blocks
            0x2C => {
                let Some(&flags) = bytes.get(at + 9) else {
                    return false;
                };
                match skip_sub_blocks(bytes, at + 10 + table(flags) + 1) {
                    Some(next) => next,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
}

/// The entropy-coded bytes after a scan header (for the first scan of a
/// parsed file: the rest of the file), which img-parts keeps but does not
/// hand out apart from the encoded segment.
fn entropy(sos: &JpegSegment) -> Bytes {
    let rest = sos.len_with_entropy() - sos.len();
    let whole = sos.clone().encoder().bytes();
    whole.slice(whole.len() - rest..)
}

/// Segments a viewer needs: every non-APPn segment (tables, frame, scans),
/// JFIF, the ICC profile and Adobe's colour transform. Comments and every
/// other application segment (Exif, XMP, IPTC, MPF, C2PA, vendors') go.
fn jpeg_segment_kept(segment: &JpegSegment) -> bool {
    let contents = segment.contents();
    match segment.marker() {
        markers::APP0 => contents.starts_with(b"JFIF\0"),
        markers::APP2 => contents.starts_with(b"ICC_PROFILE\0"),
        markers::APP14 => contents.starts_with(b"Adobe"),
        markers::APP1 | markers::APP3..=markers::APP13 | markers::APP15 | markers::COM => false,
        _ => true,
    }
}

/// Where the primary picture ends in the entropy-coded data after the first
/// scan header: just past its end-of-image marker, walking over the marker
/// segments between progressive scans. `None` if it never ends (cut short).
fn end_of_picture(data: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + 1 < data.len() {
        if data[at] != 0xFF {
            at += 1;
            continue;
        }
        match data[at + 1] {
            // stuffed 0xFF, restart markers, fill bytes: still entropy data
            0x00 | markers::RST0..=markers::RST7 | 0xFF => at += 1,
            markers::EOI => return Some(at + 2),
            _ => {
                // a marker segment between scans: skip it by its length
                let length = data.get(at + 2..at + 4)?;
                let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
                at = at.checked_add(2 + length)?;
            }
        }
    }
    None
}

/// Ancillary PNG chunks a viewer needs: transparency, colour, gamma,
/// physical size, and APNG's animation. Text chunks (`tEXt`, `zTXt`, `iTXt`,
/// where XMP and some tools' Exif live), `eXIf`, `tIME` and private chunks go.
const PNG_ANCILLARY_KEPT: [&[u8; 4]; 16] = [
    b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"bKGD", b"pHYs", b"hIST", b"sPLT",
    b"cICP", b"mDCV", b"cLLI", b"acTL", b"fcTL", b"fdAT",
];

fn png(input: Bytes, exif: Option<Bytes>) -> Option<Bytes> {
    let mut png = Png::from_bytes(input).ok()?;
    png.chunks_mut().retain(|chunk| {
        let kind = chunk.kind();
        // Critical chunks (upper-case first letter) are the picture itself.
        let critical = kind[0] & 0x20 == 0;
        critical || PNG_ANCILLARY_KEPT.contains(&&kind)
    });
    png.set_exif(exif);
    Some(png.encoder().bytes())
}

/// WebP chunks a viewer needs; `EXIF`, `XMP ` and unknown chunks go.
const WEBP_KEPT: [&[u8; 4]; 7] = [
    b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF", b"ICCP",
];

/// The VP8X flag saying an `XMP ` chunk follows.
const VP8X_XMP: u8 = 0b0000_0100;

fn webp(input: Bytes, exif: Option<Bytes>) -> Option<Bytes> {
    let mut webp = WebP::from_bytes(input).ok()?;
    webp.chunks_mut()
        .retain(|chunk| WEBP_KEPT.contains(&&chunk.id()));
    // Sets or clears the EXIF flag of VP8X (and the ICC one) to match.
    webp.set_exif(exif);
    // img-parts leaves the XMP flag as it was; no XMP chunk is left.
    for chunk in webp.chunks_mut() {
        if chunk.id() == *b"VP8X"
            && let RiffContent::Data(data) = chunk.content_mut()
            && let Some(&flags) = data.first()
        {
            let mut edited = data.to_vec();
            edited[0] = flags & !VP8X_XMP;
            *data = Bytes::from(edited);
        }
    }
    Some(webp.encoder().bytes())
}
