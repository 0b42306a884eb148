//! 32-byte secret keys kept in files of the data dir (the token key, the
//! real-name key): created on first start, readable by their owner only,
//! and refused when anyone else may read them.

use std::io::Write as _;
use std::path::Path;

use rand::RngCore as _;

/// What a key file is, for the messages that refuse one.
#[derive(Debug, Clone, Copy)]
pub struct KeyFile {
    /// What the key protects, e.g. "it signs every access token".
    pub guards: &'static str,
    /// What the file must hold, e.g. "the token key is a 32-byte Ed25519 seed".
    pub holds: &'static str,
}

impl KeyFile {
    /// The 32 bytes of `path`, refusing a file that others may read or that
    /// does not hold exactly 32 bytes.
    pub fn read(&self, path: &Path) -> std::io::Result<[u8; 32]> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(std::io::Error::other(format!(
                    "{} may be read by others (mode {mode:o}); {}: \
                     make it its owner's alone (chmod 600) and start again",
                    path.display(),
                    self.guards
                )));
            }
        }
        let bytes = std::fs::read(path)?;
        bytes.as_slice().try_into().map_err(|_| {
            std::io::Error::other(format!(
                "{} holds {} bytes; {}",
                path.display(),
                bytes.len(),
                self.holds
            ))
        })
    }

    /// The key of `path` as [`KeyFile::read`] reads it, or, when there is no
    /// such file, 32 random bytes written to a new one readable by the
    /// owner only.
    pub fn read_or_create(&self, path: &Path) -> std::io::Result<[u8; 32]> {
        match self.read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            read => return read,
        }
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path)?;
        file.write_all(&key)?;
        file.sync_all()?;
        Ok(key)
    }
}
