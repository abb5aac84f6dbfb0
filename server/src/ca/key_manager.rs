//! Where authorities' private keys live, apart from their public state in
//! the datastore: on disk, 0600 (the default), or in memory (tests). An HSM
//! (PKCS#11) is a third implementation. Every call may block: callers run
//! them on the blocking pool.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zeroize::Zeroizing;

use super::{AuthorityKind, CaError};

pub trait KeyManager: Send + Sync + 'static {
    /// Keeps the PKCS#8 DER private key of authority `id`; durable when
    /// this returns.
    fn store(&self, kind: AuthorityKind, id: &str, pkcs8: &[u8]) -> Result<(), CaError>;
    /// The private key of authority `id`, if held.
    fn load(&self, kind: AuthorityKind, id: &str) -> Result<Option<Zeroizing<Vec<u8>>>, CaError>;
    /// Forgets the key of an authority that left the bundle (best effort:
    /// nothing names it any more).
    fn remove(&self, kind: AuthorityKind, id: &str);
}

/// Ids are hex; anything else is refused so an id never becomes a path.
fn safe(id: &str) -> Result<&str, CaError> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(CaError::Key(format!("invalid authority id {id:?}")))
    }
}

/// `<dir>/x509/<id>.key.pem` and `<dir>/jwt/<kid>.key.pem`, PKCS#8 PEM,
/// 0600 in 0700 directories, each written atomically.
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
    fn store(&self, kind: AuthorityKind, id: &str, pkcs8: &[u8]) -> Result<(), CaError> {
        let path = self.path(kind, id)?;
        for dir in [self.dir.clone(), self.dir.join(kind.as_str())] {
            signet_runtime::dirs::ensure_own_dir(&dir, 0o700).map_err(|e| io_error(&dir, e))?;
        }
        let pem = Zeroizing::new(signet_core::pem::encode_private_key(pkcs8));
        signet_runtime::fs::write_atomic(&path, pem.as_bytes(), 0o600)
            .map_err(|e| io_error(&path, e))
    }

    fn load(&self, kind: AuthorityKind, id: &str) -> Result<Option<Zeroizing<Vec<u8>>>, CaError> {
        let path = self.path(kind, id)?;
        let pem = match std::fs::read(&path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, e)),
        };
        let der = signet_core::pem::decode_private_key(&pem).map_err(|e| io_error(&path, e))?;
        Ok(Some(Zeroizing::new(der)))
    }

    fn remove(&self, kind: AuthorityKind, id: &str) {
        if let Ok(path) = self.path(kind, id) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Private keys by (kind, id).
type KeyMap = HashMap<(&'static str, String), Zeroizing<Vec<u8>>>;

/// Keys held only in this process: they die with it.
#[derive(Default)]
pub struct MemoryKeys {
    keys: Mutex<KeyMap>,
}

impl MemoryKeys {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeyMap> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KeyManager for MemoryKeys {
    fn store(&self, kind: AuthorityKind, id: &str, pkcs8: &[u8]) -> Result<(), CaError> {
        self.lock().insert(
            (kind.as_str(), id.to_owned()),
            Zeroizing::new(pkcs8.to_vec()),
        );
        Ok(())
    }

    fn load(&self, kind: AuthorityKind, id: &str) -> Result<Option<Zeroizing<Vec<u8>>>, CaError> {
        Ok(self.lock().get(&(kind.as_str(), id.to_owned())).cloned())
    }

    fn remove(&self, kind: AuthorityKind, id: &str) {
        self.lock().remove(&(kind.as_str(), id.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn disk_keys_are_0600_in_0700_dirs_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DiskKeys::new(dir.path().join("ca"));
        let der = rcgen::KeyPair::generate().unwrap().serialize_der();
        keys.store(AuthorityKind::X509, "ab12", &der).unwrap();
        let path = dir.path().join("ca/x509/ab12.key.pem");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("ca/x509")), 0o700);
        assert_eq!(mode(&dir.path().join("ca")), 0o700);
        assert_eq!(
            keys.load(AuthorityKind::X509, "ab12")
                .unwrap()
                .unwrap()
                .as_slice(),
            der.as_slice()
        );
        assert!(keys.load(AuthorityKind::Jwt, "ab12").unwrap().is_none());
        keys.remove(AuthorityKind::X509, "ab12");
        assert!(keys.load(AuthorityKind::X509, "ab12").unwrap().is_none());
    }

    #[test]
    fn an_id_never_becomes_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DiskKeys::new(dir.path().to_path_buf());
        for id in ["../x", "", "a/b", "zz"] {
            assert!(keys.store(AuthorityKind::Jwt, id, b"k").is_err(), "{id}");
            assert!(keys.load(AuthorityKind::Jwt, id).is_err(), "{id}");
        }
    }

    #[test]
    fn memory_keys_hold_what_was_stored_until_removed() {
        let keys = MemoryKeys::default();
        keys.store(AuthorityKind::Jwt, "01", b"secret").unwrap();
        assert_eq!(
            keys.load(AuthorityKind::Jwt, "01")
                .unwrap()
                .unwrap()
                .as_slice(),
            b"secret"
        );
        assert!(keys.load(AuthorityKind::X509, "01").unwrap().is_none());
        keys.remove(AuthorityKind::Jwt, "01");
        assert!(keys.load(AuthorityKind::Jwt, "01").unwrap().is_none());
    }
}
