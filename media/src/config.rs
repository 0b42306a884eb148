//! The `[media]` section of the configuration: its keys, defaults and
//! checks. The binary assembles the whole configuration from the rooms'
//! sections.

use serde::{Deserialize, Serialize};
use superapp_kit::config::ConfigError;
use superapp_kit::secret::Secret;

use crate::image::ImageLimits;
use crate::model::UploadLimits;
use crate::policy::SizeLimits;

const MB: u64 = 1_000_000;
const GIB: u64 = 1 << 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Largest image upload, in bytes.
    pub max_image_bytes: u64,
    /// Largest voice upload, in bytes.
    pub max_voice_bytes: u64,
    /// Largest video upload, in bytes.
    pub max_video_bytes: u64,
    /// Largest upload of any other file, in bytes.
    pub max_file_bytes: u64,
    /// What one user may hold, in bytes: the objects they uploaded and that
    /// are not yet collected, each counted once, plus what their open
    /// uploads will bring. One more is refused with `quota_exceeded`.
    pub quota_bytes: u64,
    /// Uploads one user may have open (begun, not finished) at once; one
    /// more is refused with `too_many_uploads` (1 to 1000).
    pub max_open_uploads: u32,
    /// How long an unfinished upload lives from its creation, in seconds;
    /// then the sweep removes it and its staging file (60 to 604800).
    pub upload_ttl_secs: u64,
    /// Images processed at once (decoding, stripping metadata, thumbnails),
    /// each on a blocking thread (1 to 64).
    pub processing_concurrency: u32,
    /// Largest image decoded, in pixels (width × height); larger ones are
    /// refused with `image_too_large`.
    pub max_image_pixels: u64,
    /// The longer edge of an image's thumbnail, in pixels (16 to 2048).
    pub thumbnail_edge: u32,
    /// How long a download link works, in seconds (1 to 86400).
    pub link_ttl_secs: u64,
    /// The key download links are signed with, base64 of 32 random bytes.
    /// Unset: a key file in the data dir, created on first start. Core nodes
    /// that serve the same media must share it. Never printed.
    pub link_key: Option<Secret<String>>,
    /// How often the sweep collects unreferenced media and expired uploads,
    /// in seconds (1 to 86400).
    pub sweep_secs: u64,
    /// How long an object nothing references is kept after its last upload,
    /// in seconds, so that a message can still be sent with it (0 to
    /// 2592000).
    pub grace_secs: u64,
    /// An S3-compatible object store for the blobs. Unset: the filesystem,
    /// under `<data_dir>/media/blobs`.
    pub s3: Option<S3Config>,
}

/// Where the blobs live in an S3-compatible store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket, which must exist.
    pub bucket: String,
    /// The endpoint, e.g. `https://s3.eu-west-1.amazonaws.com` or a MinIO
    /// or Ceph address. Unset: AWS's endpoint of `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region (any value for most S3-compatible servers).
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    /// Never printed.
    pub secret_access_key: Secret<String>,
    /// Allow an `http://` endpoint (a server on the same host or network).
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_image_bytes: 20 * MB,
            max_voice_bytes: 20 * MB,
            max_video_bytes: 200 * MB,
            max_file_bytes: GIB,
            quota_bytes: 10 * GIB,
            max_open_uploads: 20,
            upload_ttl_secs: 24 * 3600,
            processing_concurrency: 2,
            max_image_pixels: 50_000_000,
            thumbnail_edge: 320,
            link_ttl_secs: 600,
            link_key: None,
            sweep_secs: 600,
            grace_secs: 24 * 3600,
            s3: None,
        }
    }
}

impl MediaConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, u64, u64, u64); 9] = [
            (
                "media.max_open_uploads",
                self.max_open_uploads.into(),
                1,
                1000,
            ),
            (
                "media.upload_ttl_secs",
                self.upload_ttl_secs,
                60,
                7 * 86_400,
            ),
            (
                "media.processing_concurrency",
                self.processing_concurrency.into(),
                1,
                64,
            ),
            ("media.thumbnail_edge", self.thumbnail_edge.into(), 16, 2048),
            ("media.link_ttl_secs", self.link_ttl_secs, 1, 86_400),
            ("media.sweep_secs", self.sweep_secs, 1, 86_400),
            ("media.grace_secs", self.grace_secs, 0, 30 * 86_400),
            ("media.max_image_pixels", self.max_image_pixels, 1, 1 << 40),
            ("media.quota_bytes", self.quota_bytes, 0, u64::MAX >> 1),
        ];
        for (key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::invalid(key, format!("must be {min} to {max}")));
            }
        }
        for (key, value) in [
            ("media.max_image_bytes", self.max_image_bytes),
            ("media.max_voice_bytes", self.max_voice_bytes),
            ("media.max_video_bytes", self.max_video_bytes),
            ("media.max_file_bytes", self.max_file_bytes),
        ] {
            if !(1..=1 << 40).contains(&value) {
                return Err(ConfigError::invalid(key, "must be 1 to 1099511627776"));
            }
        }
        if let Some(s3) = &self.s3
            && s3.bucket.is_empty()
        {
            return Err(ConfigError::invalid("media.s3.bucket", "must be set"));
        }
        Ok(())
    }

    pub fn size_limits(&self) -> SizeLimits {
        SizeLimits {
            image: self.max_image_bytes,
            voice: self.max_voice_bytes,
            video: self.max_video_bytes,
            file: self.max_file_bytes,
        }
    }

    pub fn upload_limits(&self) -> UploadLimits {
        UploadLimits {
            quota_bytes: self.quota_bytes,
            max_open_uploads: self.max_open_uploads,
        }
    }

    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_pixels: self.max_image_pixels,
            thumbnail_edge: self.thumbnail_edge,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_defaults_pass_their_own_checks() {
        MediaConfig::default().validate().unwrap();
    }

    #[test]
    fn a_setting_out_of_bounds_is_named() {
        let config = MediaConfig {
            link_ttl_secs: 0,
            ..MediaConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("media.link_ttl_secs"), "{err}");
    }
}
