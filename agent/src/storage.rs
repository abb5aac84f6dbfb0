//! The agent's data dir: its private key (PKCS#8 PEM, 0600; a TPM key as
//! the TPM's blobs, `TPM2 PUBLIC` and `TPM2 PRIVATE`), its SVID chain
//! and the trust bundle. Every file is written atomically (temp file with the
//! final mode, fsync, rename) so a crash never leaves a half-written key.

use std::fs;
use std::path::{Path, PathBuf};

const KEY_FILE: &str = "agent_key.pem";
const SVID_FILE: &str = "agent_svid.pem";
const BUNDLE_FILE: &str = "bundle.pem";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Pem {
        path: PathBuf,
        source: signet_core::pem::PemError,
    },
    #[error("agent data dir: {0}")]
    Directory(#[from] signet_runtime::dirs::DirError),
}

/// What the agent persists between restarts.
#[derive(Clone)]
pub struct StoredIdentity {
    pub key: StoredKey,
    pub chain: Vec<Vec<u8>>,
}

/// The agent key as the data dir keeps it.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredKey {
    /// PKCS#8 DER; wiped when dropped.
    Pkcs8(zeroize::Zeroizing<Vec<u8>>),
    /// A TPM key: its TPMT_PUBLIC and its private area wrapped by the TPM
    /// (usable only in that TPM).
    Tpm { public: Vec<u8>, private: Vec<u8> },
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoredKey::Pkcs8(_) => "StoredKey::Pkcs8(..)",
            StoredKey::Tpm { .. } => "StoredKey::Tpm(..)",
        })
    }
}

const TPM_PUBLIC: &str = "TPM2 PUBLIC";
const TPM_PRIVATE: &str = "TPM2 PRIVATE";

impl StoredKey {
    fn encode(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(match self {
            StoredKey::Pkcs8(der) => signet_core::pem::encode_private_key(der),
            StoredKey::Tpm { public, private } => pem::encode_many(&[
                pem::Pem::new(TPM_PUBLIC, public.clone()),
                pem::Pem::new(TPM_PRIVATE, private.clone()),
            ]),
        })
    }

    fn decode(text: &[u8]) -> Result<Self, signet_core::pem::PemError> {
        let blocks = pem::parse_many(text)
            .map_err(|e| signet_core::pem::PemError::Malformed(e.to_string()))?;
        let block = |tag: &str| {
            blocks
                .iter()
                .find(|b| b.tag() == tag)
                .map(|b| b.contents().to_vec())
        };
        match (block(TPM_PUBLIC), block(TPM_PRIVATE)) {
            (Some(public), Some(private)) => Ok(StoredKey::Tpm { public, private }),
            _ => signet_core::pem::decode_private_key(text)
                .map(|der| StoredKey::Pkcs8(zeroize::Zeroizing::new(der))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
}

impl Storage {
    /// Creates the data dir (0700) if missing; refuses one another user
    /// owns or can write to (it would hold our key).
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        signet_runtime::dirs::ensure_own_dir(dir, 0o700)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored key and SVID, or `None` when either file is missing.
    pub fn load_identity(&self) -> Result<Option<StoredIdentity>, StorageError> {
        let (Some(key), Some(svid)) = (self.read(KEY_FILE)?, self.read(SVID_FILE)?) else {
            return Ok(None);
        };
        let key = StoredKey::decode(&key).map_err(|source| self.pem_err(KEY_FILE, source))?;
        let chain = signet_core::pem::decode_certs(&svid)
            .map_err(|source| self.pem_err(SVID_FILE, source))?;
        Ok(Some(StoredIdentity { key, chain }))
    }

    pub fn save_identity(&self, id: &StoredIdentity) -> Result<(), StorageError> {
        // Key first: a crash in between leaves an SVID that fails the
        // key-match check rather than a key without its certificate.
        self.write(KEY_FILE, id.key.encode().as_bytes(), 0o600)?;
        self.write(SVID_FILE, encode_chain(&id.chain).as_bytes(), 0o600)
    }

    /// Removes the agent key and SVID (the agent was banned or evicted).
    pub fn forget_identity(&self) -> Result<(), StorageError> {
        for name in [SVID_FILE, KEY_FILE] {
            let path = self.dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(io_err(&path, source)),
            }
        }
        Ok(())
    }

    pub fn load_bundle(&self) -> Result<Option<Vec<Vec<u8>>>, StorageError> {
        match self.read(BUNDLE_FILE)? {
            None => Ok(None),
            Some(text) => signet_core::pem::decode_certs(&text)
                .map(Some)
                .map_err(|source| self.pem_err(BUNDLE_FILE, source)),
        }
    }

    pub fn save_bundle(&self, bundle: &[Vec<u8>]) -> Result<(), StorageError> {
        self.write(BUNDLE_FILE, encode_chain(bundle).as_bytes(), 0o644)
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.dir.join(name);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_err(&path, source)),
        }
    }

    fn write(&self, name: &str, contents: &[u8], mode: u32) -> Result<(), StorageError> {
        write_atomic(&self.dir.join(name), contents, mode)
    }

    fn pem_err(&self, name: &str, source: signet_core::pem::PemError) -> StorageError {
        StorageError::Pem {
            path: self.dir.join(name),
            source,
        }
    }
}

/// [`signet_runtime::fs::write_atomic`], the error naming the file.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), StorageError> {
    signet_runtime::fs::write_atomic(path, contents, mode).map_err(|e| io_err(path, e))
}

/// [`signet_runtime::fs::write_atomic_with`], the error naming the file.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<(), StorageError> {
    signet_runtime::fs::write_atomic_with(path, mode, write).map_err(|e| io_err(path, e))
}

fn encode_chain(ders: &[Vec<u8>]) -> String {
    signet_core::pem::encode_certs(ders.iter().map(Vec::as_slice))
}

fn io_err(path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn identity_round_trips_with_private_key_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(&dir.path().join("agent")).unwrap();
        assert!(s.load_identity().unwrap().is_none());
        let id = StoredIdentity {
            key: StoredKey::Pkcs8(zeroize::Zeroizing::new(b"key".to_vec())),
            chain: vec![b"leaf".to_vec(), b"int".to_vec()],
        };
        s.save_identity(&id).unwrap();
        let back = s.load_identity().unwrap().unwrap();
        assert_eq!(back.key, id.key);
        let tpm = StoredIdentity {
            key: StoredKey::Tpm {
                public: b"public".to_vec(),
                private: b"sealed".to_vec(),
            },
            chain: id.chain.clone(),
        };
        s.save_identity(&tpm).unwrap();
        assert_eq!(s.load_identity().unwrap().unwrap().key, tpm.key);
        s.save_identity(&id).unwrap();
        assert_eq!(back.chain, id.chain);
        let mode = fs::metadata(s.dir().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(s.dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn bundle_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        assert!(s.load_bundle().unwrap().is_none());
        s.save_bundle(&[b"ca1".to_vec()]).unwrap();
        assert_eq!(s.load_bundle().unwrap().unwrap(), vec![b"ca1".to_vec()]);
    }
}
