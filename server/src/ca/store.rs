//! The authorities on disk, under `<data-dir>/ca/`:
//! `x509/<id>.key.pem` (0600) + `x509/<id>.cert.pem`, `jwt/<kid>.key.pem`
//! (0600), and `authorities.json`, the states and taint flags, written
//! atomically after the key files. The active CA and JWT key are also
//! mirrored to `ca.key.pem`/`ca.cert.pem` and `jwt.key.pem`/`jwt.kid`
//! (the layout before rotation, imported on first start).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use signet_core::clock::{from_unix_seconds, unix_seconds};

use super::disk::{create_private_dir, write_atomic};
use super::rotation::AuthorityState;
use super::CaError;

pub const STATE_FILE: &str = "authorities.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateFile {
    #[serde(default)]
    pub x509: Vec<StateRecord>,
    #[serde(default)]
    pub jwt: Vec<StateRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateRecord {
    pub id: String,
    pub state: AuthorityState,
    pub tainted: bool,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl StateRecord {
    pub fn not_before(&self) -> SystemTime {
        from_unix_seconds(self.not_before)
    }
    pub fn not_after(&self) -> SystemTime {
        from_unix_seconds(self.not_after)
    }
}

pub fn record(meta: &super::rotation::Meta) -> StateRecord {
    StateRecord {
        id: meta.id.clone(),
        state: meta.state,
        tainted: meta.tainted,
        not_before: unix_seconds(meta.not_before),
        not_after: unix_seconds(meta.not_after),
    }
}

pub struct Store {
    dir: PathBuf,
}

/// Ids are hex; anything else is refused so an id never becomes a path.
fn safe(id: &str) -> Result<&str, CaError> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(CaError::Key(format!("invalid authority id {id:?}")))
    }
}

pub fn read_opt(path: &Path) -> Result<Option<String>, CaError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CaError::Io(path.to_path_buf(), e.to_string())),
    }
}

impl Store {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn read_state(&self) -> Result<Option<StateFile>, CaError> {
        let path = self.dir.join(STATE_FILE);
        match read_opt(&path)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| CaError::Io(path, format!("invalid state file: {e}"))),
        }
    }

    pub fn write_state(&self, state: &StateFile) -> Result<(), CaError> {
        let path = self.dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(state)
            .map_err(|e| CaError::Io(path.clone(), e.to_string()))?;
        create_private_dir(&self.dir)?;
        write_atomic(&path, text.as_bytes(), 0o600)
    }

    fn x509_paths(&self, id: &str) -> Result<(PathBuf, PathBuf), CaError> {
        let id = safe(id)?;
        let d = self.dir.join("x509");
        Ok((
            d.join(format!("{id}.key.pem")),
            d.join(format!("{id}.cert.pem")),
        ))
    }

    fn jwt_path(&self, kid: &str) -> Result<PathBuf, CaError> {
        Ok(self.dir.join("jwt").join(format!("{}.key.pem", safe(kid)?)))
    }

    pub fn write_x509(&self, id: &str, key_pem: &str, cert_pem: &str) -> Result<(), CaError> {
        let (k, c) = self.x509_paths(id)?;
        create_private_dir(&self.dir)?;
        create_private_dir(&self.dir.join("x509"))?;
        write_atomic(&k, key_pem.as_bytes(), 0o600)?;
        write_atomic(&c, cert_pem.as_bytes(), 0o644)
    }

    pub fn read_x509(&self, id: &str) -> Result<Option<(String, String)>, CaError> {
        let (k, c) = self.x509_paths(id)?;
        Ok(read_opt(&k)?.zip(read_opt(&c)?))
    }

    pub fn write_jwt(&self, kid: &str, key_pem: &str) -> Result<(), CaError> {
        let p = self.jwt_path(kid)?;
        create_private_dir(&self.dir)?;
        create_private_dir(&self.dir.join("jwt"))?;
        write_atomic(&p, key_pem.as_bytes(), 0o600)
    }

    pub fn read_jwt(&self, kid: &str) -> Result<Option<String>, CaError> {
        read_opt(&self.jwt_path(kid)?)
    }

    /// Removes a dropped authority's files (best effort: the state file no
    /// longer names them).
    pub fn remove_x509(&self, id: &str) {
        if let Ok((k, c)) = self.x509_paths(id) {
            let _ = fs::remove_file(k);
            let _ = fs::remove_file(c);
        }
    }

    pub fn remove_jwt(&self, kid: &str) {
        if let Ok(p) = self.jwt_path(kid) {
            let _ = fs::remove_file(p);
        }
    }
}
