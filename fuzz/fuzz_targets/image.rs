//! Image processing (`media/src/image.rs`): `process` over whatever bytes an
//! upload holds, declared as each of the five image formats, with and
//! without keeping metadata.
//!
//! Processing never panics. An image it accepts has a size within the
//! limits; kept metadata stores the very bytes uploaded; a thumbnail is a
//! JPEG; and the stored form, processed again, answers the same size and
//! stores itself unchanged (stripping is idempotent).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use superapp_media::image::{ImageFormat, ImageLimits, process};

const FORMATS: [ImageFormat; 5] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::Webp,
    ImageFormat::Gif,
    ImageFormat::Heic,
];

/// One scratch directory per fuzzing process (`process` works on files).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("superapp-fuzz-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the format (low 7 bits) and whether metadata is
    // kept (top bit).
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(selector & 0x7F) % FORMATS.len()];
    let keep = selector & 0x80 != 0;
    // Small limits keep each execution fast; the logic is the same.
    let limits = ImageLimits {
        max_pixels: 1 << 20,
        thumbnail_edge: 64,
    };
    let dir = scratch();
    let (input, output, again) = (dir.join("in"), dir.join("out"), dir.join("again"));
    std::fs::write(&input, bytes).expect("the input written");
    let _ = std::fs::remove_file(&output);
    let Ok(processed) = process(format, &input, &output, keep, &limits) else {
        return;
    };
    assert!(processed.width > 0 && processed.height > 0);
    assert!(u64::from(processed.width) * u64::from(processed.height) <= limits.max_pixels);
    if let Some(thumbnail) = &processed.thumbnail {
        assert!(thumbnail.starts_with(&[0xFF, 0xD8]), "a JPEG thumbnail");
    }
    let stored = std::fs::read(&output).expect("the stored form written");
    if keep {
        assert_eq!(stored, bytes, "kept metadata stores the bytes uploaded");
        return;
    }
    let second = process(format, &output, &again, false, &limits).expect("the stored form reads");
    assert_eq!((second.width, second.height), (processed.width, processed.height));
    let restored = std::fs::read(&again).expect("stored again");
    assert_eq!(restored, stored, "stripping twice changes nothing more");
});
