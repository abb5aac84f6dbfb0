//! Keys on disk: `<dir>/x509/<id>.key.pem` and `<dir>/jwt/<kid>.key.pem`,
//! PKCS#8 PEM, 0600 in 0700 directories, each written atomically.

use std::io;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{safe, KeyManager, PrivateKey};
use crate::ca::{AuthorityKind, CaError};

pub struct DiskKeys {
    dir: PathBuf,
}

impl DiskKeys {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, kind: AuthorityKind, id: &str) -> Result<PathBuf, CaError> {
        Ok(self
            .dir
            .join(kind.as_str())
            .join(format!("{}.key.pem", safe(id)?)))
    }
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> CaError {
    CaError::Io(path.to_path_buf(), e.to_string())
}

impl KeyManager for DiskKeys {
    fn store(&self, kind: AuthorityKind, id: &str, key: &PrivateKey) -> Result<(), CaError> {
        let PrivateKey::Software(pkcs8) = key else {
            return Err(CaError::Key(
                "a key held by a token cannot be written to disk".into(),
            ));
        };
        let path = self.path(kind, id)?;
        for dir in [self.dir.clone(), self.dir.join(kind.as_str())] {
            signet_runtime::dirs::ensure_own_dir(&dir, 0o700).map_err(|e| io_error(&dir, e))?;
        }
        let pem = Zeroizing::new(signet_core::pem::encode_private_key(pkcs8));
        signet_runtime::fs::write_atomic(&path, pem.as_bytes(), 0o600)
            .map_err(|e| io_error(&path, e))
    }

    fn load(&self, kind: AuthorityKind, id: &str) -> Result<Option<PrivateKey>, CaError> {
        let path = self.path(kind, id)?;
        let pem = match std::fs::read(&path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, e)),
        };
        let der = signet_core::pem::decode_private_key(&pem).map_err(|e| io_error(&path, e))?;
        Ok(Some(PrivateKey::Software(Zeroizing::new(der))))
    }

    fn remove(&self, kind: AuthorityKind, id: &str) {
        if let Ok(path) = self.path(kind, id) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn der(key: Option<PrivateKey>) -> Option<Vec<u8>> {
        match key? {
            PrivateKey::Software(der) => Some(der.to_vec()),
            PrivateKey::Held(_) => None,
        }
    }

    #[test]
    fn disk_keys_are_0600_in_0700_dirs_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DiskKeys::new(dir.path().join("ca"));
        let key = keys
            .generate(AuthorityKind::X509, Default::default())
            .unwrap();
        keys.store(AuthorityKind::X509, "ab12", &key).unwrap();
        let path = dir.path().join("ca/x509/ab12.key.pem");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("ca/x509")), 0o700);
        assert_eq!(mode(&dir.path().join("ca")), 0o700);
        assert_eq!(
            der(keys.load(AuthorityKind::X509, "ab12").unwrap()),
            der(Some(key))
        );
        assert!(keys.load(AuthorityKind::Jwt, "ab12").unwrap().is_none());
        keys.remove(AuthorityKind::X509, "ab12");
        assert!(keys.load(AuthorityKind::X509, "ab12").unwrap().is_none());
    }

    #[test]
    fn an_id_never_becomes_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DiskKeys::new(dir.path().to_path_buf());
        let key = PrivateKey::Software(Zeroizing::new(b"k".to_vec()));
        for id in ["../x", "", "a/b", "zz"] {
            assert!(keys.store(AuthorityKind::Jwt, id, &key).is_err(), "{id}");
            assert!(keys.load(AuthorityKind::Jwt, id).is_err(), "{id}");
        }
    }
}
