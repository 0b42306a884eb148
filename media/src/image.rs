//! Image processing for uploads: what the media room runs (blocking, off the
//! async threads, a bounded number at a time) on every uploaded image once
//! all its bytes arrived.
//!
//! [`process`] reads the picture's size, refuses a decompression bomb from
//! its header before any pixel is decoded, writes the form to store, and
//! makes a JPEG thumbnail. docs/architecture.md §23 says what is read and
//! what is stripped, and why.
//!
//! - The stored form is the uploaded bytes with metadata taken out
//!   ([`container`]) unless the sender keeps it: the pixels are never re-encoded,
//!   so stripping loses nothing of the picture.
//! - HEIC / HEIF is read by hand ([`heic`]): its size from the container, its
//!   Exif and XMP overwritten in place; no decoder, so no thumbnail.
//!
//! Invariant: no input makes [`process`] panic; whatever it cannot read is
//! [`ImageError::Unreadable`].

mod container;
mod heic;
#[cfg(test)]
mod tests;

use std::io::Cursor;
use std::path::Path;

use ::image::codecs::jpeg::JpegEncoder;
use ::image::error::ImageError as DecodeError;
use ::image::metadata::Orientation;
use ::image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};
use img_parts::Bytes;

/// The formats the media room accepts as images, told by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
    /// HEIC and the other HEIF brands (`mif1`, `heix`, ...).
    Heic,
}

/// Bounds on the work one image may cause.
#[derive(Debug, Clone)]
pub struct ImageLimits {
    /// Largest width × height accepted, read from the header before any
    /// decoding; the decoder's memory is bounded by 4 bytes per such pixel.
    pub max_pixels: u64,
    /// Longest edge of the thumbnail, in pixels; 0 makes none.
    pub thumbnail_edge: u32,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_pixels: 50_000_000,
            thumbnail_edge: 320,
        }
    }
}

/// The facts of a processed image.
#[derive(Debug, Clone)]
pub struct Processed {
    /// Size as displayed: after the Exif Orientation (JPEG, PNG, WebP) or the
    /// `irot` rotation (HEIC), so a client can lay the picture out before
    /// it has the bytes.
    pub width: u32,
    pub height: u32,
    /// A JPEG whose longer edge is at most `thumbnail_edge`, oriented as
    /// displayed; `None` for HEIC (no decoder here), when `thumbnail_edge`
    /// is 0, or when decoding would need more memory than the limits allow.
    pub thumbnail: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("not a readable image")]
    Unreadable,
    #[error("more than {max} pixels")]
    TooManyPixels { max: u64 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Quality of the thumbnails' JPEG: small files that still look sharp at
/// the size a chat bubble shows them.
const THUMBNAIL_QUALITY: u8 = 80;

/// Blocking: reads `input`, writes the form to store to `output` (location and other
/// metadata stripped unless `keep_metadata`), answers its facts.
///
/// Nothing is written to `output` unless the image is readable and within
/// `limits`. With `keep_metadata`, `output` gets exactly the bytes of `input`.
pub fn process(
    format: ImageFormat,
    input: &Path,
    output: &Path,
    keep_metadata: bool,
    limits: &ImageLimits,
) -> Result<Processed, ImageError> {
    let bytes = Bytes::from(std::fs::read(input)?);
    let (stored, processed) = process_bytes(format, &bytes, keep_metadata, limits)?;
    std::fs::write(output, stored.as_ref().unwrap_or(&bytes))?;
    Ok(processed)
}

/// [`process`] on bytes in memory: the form to store (`None`: the input
/// as it is) and the facts.
fn process_bytes(
    format: ImageFormat,
    bytes: &Bytes,
    keep_metadata: bool,
    limits: &ImageLimits,
) -> Result<(Option<Bytes>, Processed), ImageError> {
    let decodable = match format {
        ImageFormat::Jpeg => ::image::ImageFormat::Jpeg,
        ImageFormat::Png => ::image::ImageFormat::Png,
        ImageFormat::Webp => ::image::ImageFormat::WebP,
        ImageFormat::Gif => ::image::ImageFormat::Gif,
        ImageFormat::Heic => return process_heic(bytes, keep_metadata, limits),
    };

    // The size the container declares, read without a decoder: a bomb is
    // refused here even if a decoder would balk at its header first.
    if let Some((width, height)) = container::declared_size(format, bytes) {
        check_pixels(width, height, limits)?;
    }
    // The decoders allocate against this budget: enough for the largest
    // picture allowed at 8-bit RGBA, never more, whatever a header claims.
    let mut budget = Limits::default();
    budget.max_alloc = Some(limits.max_pixels.saturating_mul(4));
    let mut reader = ImageReader::with_format(Cursor::new(&bytes[..]), decodable);
    reader.limits(budget.clone());
    // Reads the header only: no pixel is decoded before the size is checked.
    let mut decoder = reader.into_decoder().map_err(|_| ImageError::Unreadable)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    // A broken Exif block does not make the picture unreadable: it is shown
    // as stored, and stripped with the rest.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    if !container::is_whole(format, bytes) {
        return Err(ImageError::Unreadable);
    }

    let stored = if keep_metadata {
        None
    } else {
        Some(container::strip(format, bytes, orientation).ok_or(ImageError::Unreadable)?)
    };

    // Decoded even when no thumbnail is wanted: a picture whose pixels do
    // not decode (garbage after its header, a lying header) is not stored.
    // One past the memory budget is stored undecoded, without a thumbnail.
    let total = decoder.total_bytes();
    let picture = match budget.reserve(total) {
        Ok(()) => match DynamicImage::from_decoder(decoder) {
            Ok(picture) => Some(picture),
            // Past the memory budget although the pixel count is within
            // limits (16-bit samples, a decoder's own buffers).
            Err(DecodeError::Limits(_)) => None,
            Err(_) => return Err(ImageError::Unreadable),
        },
        Err(_) => None,
    };
    let thumbnail = match picture {
        Some(picture) if limits.thumbnail_edge > 0 => {
            Some(thumbnail(picture, orientation, limits.thumbnail_edge)?)
        }
        _ => None,
    };
    let (width, height) = displayed(width, height, orientation);
    Ok((
        stored,
        Processed {
            width,
            height,
            thumbnail,
        },
    ))
}

fn process_heic(
    bytes: &[u8],
    keep_metadata: bool,
    limits: &ImageLimits,
) -> Result<(Option<Bytes>, Processed), ImageError> {
    let heif = heic::Heif::parse(bytes).map_err(|_| ImageError::Unreadable)?;
    check_pixels(heif.width, heif.height, limits)?;
    let stored = (!keep_metadata).then(|| Bytes::from(heif.strip(bytes)));
    Ok((
        stored,
        Processed {
            width: heif.width,
            height: heif.height,
            thumbnail: None,
        },
    ))
}

/// Refuses a picture whose header claims more pixels than allowed, or none.
fn check_pixels(width: u32, height: u32, limits: &ImageLimits) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Unreadable);
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageError::TooManyPixels {
            max: limits.max_pixels,
        });
    }
    Ok(())
}

/// Width and height as displayed once `orientation` is applied.
fn displayed(width: u32, height: u32, orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (height, width),
        _ => (width, height),
    }
}

/// The picture shrunk to fit `edge` × `edge`, turned as displayed, as JPEG.
/// Transparent pixels are laid on white, as a chat shows them.
fn thumbnail(
    picture: DynamicImage,
    orientation: Orientation,
    edge: u32,
) -> Result<Vec<u8>, ImageError> {
    let mut small = if picture.width().max(picture.height()) > edge {
        picture.thumbnail(edge, edge)
    } else {
        picture
    };
    small.apply_orientation(orientation);
    let rgb = if small.color().has_alpha() {
        on_white(&small)
    } else {
        small.to_rgb8()
    };
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, THUMBNAIL_QUALITY)
        .encode_image(&rgb)
        .map_err(|_| ImageError::Unreadable)?;
    Ok(out)
}

fn on_white(picture: &DynamicImage) -> RgbImage {
    let rgba = picture.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let blend = |c: u8| {
            let (c, a) = (u16::from(c), u16::from(a));
            // c·a + 255·(255 − a), over 255: at most 255, so the cast is exact
            ((c * a + 255 * (255 - a) + 127) / 255) as u8
        };
        ::image::Rgb([blend(r), blend(g), blend(b)])
    })
}
