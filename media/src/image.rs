//! Image processing: reading an image's dimensions, stripping its metadata
//! (location above all) unless the sender keeps it, and making a JPEG
//! thumbnail. This is a placeholder with the module's final contract: it
//! copies the input to the output and reports no dimensions and no
//! thumbnail. Its callers run it on the blocking pool under a bound.

use std::path::Path;

/// The image formats uploads are sniffed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
    Heic,
}

/// What processing refuses to go past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest width × height decoded (a small file may decode to gigabytes).
    pub max_pixels: u64,
    /// The longer edge of a thumbnail, in pixels.
    pub thumbnail_edge: u32,
}

/// What processing learnt and made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub width: u32,
    pub height: u32,
    /// A JPEG thumbnail, when one was made.
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

/// Blocking: reads `input`, writes the form to store to `output` (location and other
/// metadata stripped unless `keep_metadata`), answers its facts.
pub fn process(
    format: ImageFormat,
    input: &Path,
    output: &Path,
    keep_metadata: bool,
    limits: &ImageLimits,
) -> Result<Processed, ImageError> {
    let _ = (format, keep_metadata, limits);
    std::fs::copy(input, output)?;
    Ok(Processed {
        width: 0,
        height: 0,
        thumbnail: None,
    })
}
