//! The CA's files in `<data-dir>/ca/`: `ca.key.pem` (0600, written atomically:
//! a 0600 temp file, fsync, rename) and `ca.cert.pem`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::CaError;

pub const KEY_FILE: &str = "ca.key.pem";
pub const CERT_FILE: &str = "ca.cert.pem";

pub struct CaFiles {
    dir: PathBuf,
}

impl CaFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

    /// The PEM texts of key and certificate, or `None` when either is missing.
    pub fn read(&self) -> Result<Option<(String, String)>, CaError> {
        let read = |p: PathBuf| match fs::read_to_string(&p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CaError::Io(p, e.to_string())),
        };
        match (read(self.key_path())?, read(self.cert_path())?) {
            (Some(k), Some(c)) => Ok(Some((k, c))),
            _ => Ok(None),
        }
    }

    pub fn write(&self, key_pem: &str, cert_pem: &str) -> Result<(), CaError> {
        create_private_dir(&self.dir)?;
        write_atomic(&self.key_path(), key_pem.as_bytes(), 0o600)?;
        write_atomic(&self.cert_path(), cert_pem.as_bytes(), 0o644)?;
        Ok(())
    }
}

/// Creates `dir` (and parents) and makes it 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    fs::create_dir_all(dir).map_err(|e| CaError::Io(dir.to_path_buf(), e.to_string()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| CaError::Io(dir.to_path_buf(), e.to_string()))
}

/// [`signet_runtime::fs::write_atomic`], the error naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    signet_runtime::fs::write_atomic(path, bytes, mode)
        .map_err(|e| CaError::Io(path.to_path_buf(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_0600_and_dir_0700() {
        let dir = tempfile::tempdir().unwrap();
        let files = CaFiles::new(dir.path().join("ca"));
        assert!(files.read().unwrap().is_none());
        files.write("KEY", "CERT").unwrap();
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(files.key_path()), 0o600);
        assert_eq!(mode(dir.path().join("ca")), 0o700);
        assert_eq!(
            files.read().unwrap(),
            Some(("KEY".to_owned(), "CERT".to_owned()))
        );
    }
}
