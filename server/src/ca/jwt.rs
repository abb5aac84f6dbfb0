//! The trust domain's JWT-SVID signing key: ES256 (P-256) with a random
//! `kid`, kept beside the CA as `jwt.key.pem` (PKCS#8, 0600, written
//! atomically) and `jwt.kid`, created on first start and reused after.

use std::fs;
use std::path::{Path, PathBuf};

use signet_core::jwt::JwtSigner;

use super::disk::{create_private_dir, write_atomic};
use super::CaError;

pub const JWT_KEY_FILE: &str = "jwt.key.pem";
pub const JWT_KID_FILE: &str = "jwt.kid";

/// Where the JWT key lives in `dir`.
pub struct JwtKeyFiles {
    dir: PathBuf,
}

impl JwtKeyFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join(JWT_KEY_FILE)
    }

    pub fn kid_path(&self) -> PathBuf {
        self.dir.join(JWT_KID_FILE)
    }

    /// Loads the stored key, or generates, stores and returns a new one
    /// (`true`) when key or kid is missing.
    pub fn load_or_create(&self) -> Result<(JwtSigner, bool), CaError> {
        if let (Some(key_pem), Some(kid)) = (read(&self.key_path())?, read(&self.kid_path())?) {
            let kid = kid.trim().to_owned();
            if kid.is_empty() {
                return Err(CaError::Key(format!("{:?} is empty", self.kid_path())));
            }
            let der = signet_core::pem::decode_private_key(key_pem.as_bytes())
                .map_err(|e| CaError::Key(format!("JWT key {:?}: {e}", self.key_path())))?;
            let signer = JwtSigner::from_pkcs8(kid, &der)
                .map_err(|e| CaError::Key(format!("JWT key {:?}: {e}", self.key_path())))?;
            return Ok((signer, false));
        }
        let kid = new_kid();
        let (signer, der) =
            JwtSigner::generate(kid.clone()).map_err(|e| CaError::Key(e.to_string()))?;
        create_private_dir(&self.dir)?;
        // Key first: a kid without its key is never left behind alone.
        write_atomic(
            &self.key_path(),
            signet_core::pem::encode_private_key(&der).as_bytes(),
            0o600,
        )?;
        write_atomic(&self.kid_path(), format!("{kid}\n").as_bytes(), 0o644)?;
        Ok((signer, true))
    }
}

/// 32 lowercase hex characters from the system RNG.
fn new_kid() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn read(path: &Path) -> Result<Option<String>, CaError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CaError::Io(path.to_path_buf(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn key_is_created_0600_once_and_reused_with_the_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        let files = JwtKeyFiles::new(dir.path().join("ca"));
        let (first, created) = files.load_or_create().unwrap();
        assert!(created);
        assert_eq!(first.kid().len(), 32);
        assert!(first.kid().chars().all(|c| c.is_ascii_hexdigit()));
        let mode = fs::metadata(files.key_path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pem = fs::read_to_string(files.key_path()).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));

        let (again, created) = files.load_or_create().unwrap();
        assert!(!created);
        assert_eq!(again.kid(), first.kid());
        assert_eq!(again.public_key(), first.public_key());
        // Key material never shows in Debug output.
        assert!(!format!("{again:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_a_silent_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let files = JwtKeyFiles::new(dir.path().to_path_buf());
        files.load_or_create().unwrap();
        fs::write(files.key_path(), "garbage").unwrap();
        assert!(files.load_or_create().is_err());
    }
}
