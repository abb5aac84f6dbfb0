//! The workload SVID cache on disk, so a restarted agent serves what it held
//! before it reaches the server. One JSON file (mode 0600: it holds private
//! keys), rewritten atomically by one task a short while after the cache
//! changes, so bursts of changes cost one write and readers never wait.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::io::Write;

use signet_core::bundle::Bundle;
use signet_core::jwt::JwtPublicKey;
use signet_core::{RegistrationEntry, TrustDomain};
use tokio::sync::watch;

use super::state::{Revocations, Snapshot, Svid, Tainted};
use crate::storage::write_atomic_with;
pub use decode::decode;
use encode::{encode_to, Digest};

mod decode;
mod encode;

pub const CACHE_FILE: &str = "workload_cache.json";
const VERSION: u32 = 1;
/// Changes closer together than this are written once.
const COALESCE: Duration = Duration::from_millis(200);
/// A cache that never pauses (a cold start publishes every 100 ms) is still
/// written this long after it first changed: writing a 10k-entry cache
/// every 200 ms cost an eighth of a cold start's CPU on the agent.
const MAX_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] crate::storage::StorageError),
    #[error("cannot encode the cache: {0}")]
    Encode(String),
}

/// What a previous run left, parsed and checked.
#[derive(Debug, Default)]
pub struct Restored {
    pub revision: u64,
    pub bundle: Vec<Vec<u8>>,
    pub jwt_keys: Vec<(String, JwtPublicKey)>,
    /// Other trust domains' bundles (none in a file from before federation).
    pub federated_bundles: Vec<Bundle>,
    /// Authorization policy sources (name, text); none in older files.
    pub policies: Vec<(String, String)>,
    pub crls: Vec<Vec<u8>>,
    pub revocations: Revocations,
    pub tainted: Tainted,
    pub entries: Vec<(RegistrationEntry, Option<RestoredSvid>)>,
}

#[derive(Debug)]
pub struct RestoredSvid {
    pub svid: Svid,
    /// Rotation counts from here after a restart.
    pub not_before: SystemTime,
}

pub fn cache_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CACHE_FILE)
}

/// The JSON document for `snapshot`, in memory (tests and tools; the agent
/// streams it to disk with [`encode_to`]).
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, PersistError> {
    let mut out = Vec::new();
    encode_to(snapshot, &mut out)?;
    Ok(out)
}

/// Reads the cache a previous run wrote for `trust_domain`; `None` when
/// there is none (or it belongs to another trust domain).
pub fn load(data_dir: &Path, trust_domain: &TrustDomain) -> Result<Option<Restored>, PersistError> {
    let path = cache_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(PersistError::Read {
                path,
                message: e.to_string(),
            })
        }
    };
    decode(&bytes, trust_domain).map_err(|message| PersistError::Read { path, message })
}

/// Writes the published cache to disk whenever it changes, coalescing
/// bursts; the Workload API never waits for it.
pub async fn persist_loop(data_dir: PathBuf, mut snapshots: watch::Receiver<Arc<Snapshot>>) {
    let path = cache_path(&data_dir);
    // The digest of what is on disk, not the document: it can be megabytes.
    let mut last: Option<[u8; 32]> = None;
    loop {
        if snapshots.changed().await.is_err() {
            return;
        }
        settle(&mut snapshots).await;
        let snapshot = snapshots.borrow_and_update().clone();
        if !snapshot.is_ready() {
            continue;
        }
        let target = path.clone();
        let entries = snapshot.entries.len();
        // A bulk thread: encoding a cold start's 10k entries is tens of
        // milliseconds of CPU, which must not hold up the threads serving
        // workloads.
        let written =
            signet_runtime::bulk::run(move || write_if_changed(&target, &snapshot, last)).await;
        match written {
            Ok(Ok(digest)) => {
                if last != Some(digest) {
                    tracing::debug!(entries, "SVID cache persisted");
                }
                last = Some(digest);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot persist the SVID cache"),
            Err(e) => tracing::error!(error = %e, "cache writer task failed"),
        }
    }
}

/// Returns once the cache has not changed for [`COALESCE`], or
/// [`MAX_DELAY`] after it was called, or when the sender is gone.
async fn settle(snapshots: &mut watch::Receiver<Arc<Snapshot>>) {
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    loop {
        let quiet = tokio::time::Instant::now() + COALESCE;
        if quiet >= deadline {
            tokio::time::sleep_until(deadline).await;
            return;
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(quiet) => return,
        }
    }
}

/// Writes the document unless its digest is `last`; returns its digest.
/// Encoding twice (to hash, then to the file) costs far less than holding
/// the document.
fn write_if_changed(
    path: &Path,
    snapshot: &Snapshot,
    last: Option<[u8; 32]>,
) -> Result<[u8; 32], PersistError> {
    let mut digest = Digest::default();
    encode_to(snapshot, &mut digest)?;
    let digest = digest.finish();
    if last == Some(digest) {
        return Ok(digest);
    }
    // A failed encoding fails the write, so no partial file replaces the old.
    write_atomic_with(path, 0o600, |f| {
        let mut out = std::io::BufWriter::new(f);
        encode_to(snapshot, &mut out).map_err(std::io::Error::other)?;
        out.flush()
    })?;
    Ok(digest)
}

#[cfg(test)]
mod tests;
