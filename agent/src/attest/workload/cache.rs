//! Remembers a caller's selectors for a short, bounded time, so a process
//! that opens many connections is not re-attested on each (about a dozen
//! procfs reads and three blocking-pool hops).
//!
//! An entry is keyed by what names one process and what the attestors were
//! given: pid, start time (a reused pid has another), the executable's
//! device and inode (an `exec` changes them), the socket's uid and gid, and
//! whether the binary was hashed. Every call re-reads the start time and
//! the executable, so a cached answer never goes to a different process;
//! within the bound it can be stale only for what a live process changes
//! without exec (its supplementary groups or cgroup). Callers of the same
//! process arriving together share one attestation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use signet_core::Selector;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{AttestOptions, PeerInfo, WorkloadAttestError, WorkloadAttestor};

/// How long an attestation is reused by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most (bounded memory); expired ones go first.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ProcessKey {
    pid: i32,
    start_time: u64,
    /// (device, inode) of /proc/<pid>/exe; `None` where it cannot be read
    /// (another user's process when the agent is not root).
    exe: Option<(u64, u64)>,
    uid: u32,
    gid: u32,
    hash_binary: bool,
}

type Selectors = Arc<[Selector]>;

struct Slot {
    /// Filled by the first caller's attestation; the others wait for it.
    selectors: Arc<OnceCell<Selectors>>,
    expires: Instant,
}

pub struct CachedAttestor {
    inner: Arc<dyn WorkloadAttestor>,
    procfs_root: PathBuf,
    ttl: Duration,
    slots: Mutex<HashMap<ProcessKey, Slot>>,
}

impl CachedAttestor {
    pub fn new(
        inner: Arc<dyn WorkloadAttestor>,
        procfs_root: impl Into<PathBuf>,
        ttl: Duration,
    ) -> Self {
        Self {
            inner,
            procfs_root: procfs_root.into(),
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn key(
        &self,
        pid: i32,
        peer: &PeerInfo,
        options: AttestOptions,
    ) -> Result<ProcessKey, WorkloadAttestError> {
        let proc_dir = self.procfs_root.join(pid.to_string());
        Ok(ProcessKey {
            pid,
            start_time: super::unix::start_time(&proc_dir, pid)?,
            exe: super::peer::executable(&proc_dir),
            uid: peer.uid,
            gid: peer.gid,
            hash_binary: options.hash_binary,
        })
    }

    /// The slot for `key`, a fresh one if it has none or it has expired.
    fn slot(&self, key: ProcessKey) -> Arc<OnceCell<Selectors>> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(&key).filter(|s| s.expires > now) {
            return slot.selectors.clone();
        }
        if slots.len() >= MAX_ENTRIES {
            slots.retain(|_, s| s.expires > now);
            if slots.len() >= MAX_ENTRIES {
                slots.clear();
            }
        }
        let selectors = Arc::new(OnceCell::new());
        slots.insert(
            key,
            Slot {
                selectors: selectors.clone(),
                expires: now + self.ttl,
            },
        );
        selectors
    }
}

#[async_trait]
impl WorkloadAttestor for CachedAttestor {
    async fn attest(
        &self,
        peer: &PeerInfo,
        options: AttestOptions,
    ) -> Result<Vec<Selector>, WorkloadAttestError> {
        let pid = peer.pid.ok_or(WorkloadAttestError::NoPid)?;
        let key = self.key(pid, peer, options)?;
        let slot = self.slot(key);
        let selectors = slot
            .get_or_try_init(|| async {
                let selectors = self.inner.attest(peer, options).await?;
                // Cached under `key` only if it still names the process
                // that was attested.
                if self.key(pid, peer, options)? != key {
                    return Err(WorkloadAttestError::PidReused(pid));
                }
                Ok(Selectors::from(selectors))
            })
            .await?;
        Ok(selectors.to_vec())
    }
}

#[cfg(test)]
mod tests;
