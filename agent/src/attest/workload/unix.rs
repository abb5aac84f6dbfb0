//! The `unix` workload attestor: uid, gid and their names from the socket's
//! peer credentials, supplementary groups, executable path and SHA-256 from
//! procfs. The process start time is read before and after, so a pid reused
//! by another process mid-attestation fails instead of lending its selectors.
//!
//! `unix:path` is the path as the agent sees it: /proc/<pid>/exe names the
//! path in the caller's mount namespace, where anyone may bind-mount their
//! own program over /usr/bin/anything, so the path is given only when the
//! file the agent finds there is the very file (device, inode) the process
//! runs. `unix:sha256` hashes what the process runs, keyed by what only a
//! change of contents can change (the ctime cannot be set back).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use signet_core::Selector;

use super::{AttestOptions, PeerInfo, WorkloadAttestError, WorkloadAttestor};

/// Hashes kept before the cache is cleared (bounded memory).
const HASH_CACHE_MAX: usize = 1024;

/// A binary's identity on disk: same key, same contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

#[derive(Clone)]
pub struct UnixAttestor {
    inner: Arc<Inner>,
}

struct Inner {
    procfs_root: PathBuf,
    hash_size_limit: u64,
    hashes: Mutex<HashMap<FileKey, String>>,
}

impl UnixAttestor {
    pub fn new(procfs_root: impl Into<PathBuf>, hash_size_limit: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                procfs_root: procfs_root.into(),
                hash_size_limit,
                hashes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The blocking part: reads procfs and possibly hashes the binary.
    pub fn attest_blocking(
        &self,
        peer: &PeerInfo,
        options: AttestOptions,
    ) -> Result<Vec<Selector>, WorkloadAttestError> {
        let pid = peer.pid.ok_or(WorkloadAttestError::NoPid)?;
        let proc_dir = self.inner.procfs_root.join(pid.to_string());
        guard_pid_reuse(&proc_dir, pid, || {
            self.collect(&proc_dir, pid, peer, options)
        })
    }

    fn collect(
        &self,
        proc_dir: &Path,
        pid: i32,
        peer: &PeerInfo,
        options: AttestOptions,
    ) -> Result<Vec<Selector>, WorkloadAttestError> {
        let inner = &self.inner;
        let mut values = vec![format!("uid:{}", peer.uid), format!("gid:{}", peer.gid)];
        if let Ok(Some(user)) = nix::unistd::User::from_uid(peer.uid.into()) {
            values.push(format!("user:{}", user.name));
        }
        if let Ok(Some(group)) = nix::unistd::Group::from_gid(peer.gid.into()) {
            values.push(format!("group:{}", group.name));
        }
        let status = read_proc(&proc_dir.join("status"), pid)?;
        for gid in supplementary_gids(&status) {
            values.push(format!("supplementary_gid:{gid}"));
        }
        let exe = proc_dir.join("exe");
        match std::fs::read_link(&exe) {
            Ok(path) => {
                if same_file(&exe, &path) {
                    values.push(format!("path:{}", path.display()));
                } else {
                    tracing::debug!(pid, path = %path.display(), "the executable is not the file at its path as the agent sees it (another mount namespace, or replaced); no unix:path selector");
                }
                let hash = if options.hash_binary {
                    inner.sha256(&exe)
                } else {
                    Ok(None)
                };
                match hash {
                    Ok(Some(hash)) => values.push(format!("sha256:{hash}")),
                    Ok(None) => {
                        tracing::debug!(pid, "binary above the hash size limit; no sha256 selector")
                    }
                    Err(e) => tracing::debug!(pid, error = %e, "cannot hash the binary"),
                }
            }
            // Another user's process without CAP_SYS_PTRACE: path and hash
            // are not known, the credential selectors still hold.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                super::ptrace::note_denied(pid);
                tracing::debug!(pid, error = %e, "cannot read the executable path");
            }
            Err(e) => tracing::debug!(pid, error = %e, "cannot read the executable path"),
        }
        Ok(values
            .iter()
            .filter_map(|v| Selector::new("unix", v).ok())
            .collect())
    }
}

#[async_trait]
impl WorkloadAttestor for UnixAttestor {
    async fn attest(
        &self,
        peer: &PeerInfo,
        options: AttestOptions,
    ) -> Result<Vec<Selector>, WorkloadAttestError> {
        let this = self.clone();
        let peer = *peer;
        tokio::task::spawn_blocking(move || this.attest_blocking(&peer, options))
            .await
            .map_err(|e| WorkloadAttestError::Task(e.to_string()))?
    }
}

impl Inner {
    fn sha256(&self, exe: &Path) -> std::io::Result<Option<String>> {
        let mut file = File::open(exe)?;
        let meta = file.metadata()?;
        if meta.len() > self.hash_size_limit {
            return Ok(None);
        }
        let key = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        };
        if let Some(hit) = self.cache().get(&key) {
            return Ok(Some(hit.clone()));
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > self.hash_size_limit {
                return Ok(None);
            }
            hasher.update(buf.get(..n).unwrap_or_default());
        }
        let hash = hex::encode(hasher.finalize());
        let mut cache = self.cache();
        if cache.len() >= HASH_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, hash.clone());
        Ok(Some(hash))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<FileKey, String>> {
        self.hashes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `exe` (a process's /proc/<pid>/exe) and `path` are one file.
fn same_file(exe: &Path, path: &Path) -> bool {
    match (std::fs::metadata(exe), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Runs `collect` between two reads of the process start time; a change
/// (or a vanished process) means the pid now names another process.
pub(super) fn guard_pid_reuse<T>(
    proc_dir: &Path,
    pid: i32,
    collect: impl FnOnce() -> Result<T, WorkloadAttestError>,
) -> Result<T, WorkloadAttestError> {
    let started = start_time(proc_dir, pid)?;
    let result = collect()?;
    if start_time(proc_dir, pid)? != started {
        return Err(WorkloadAttestError::PidReused(pid));
    }
    Ok(result)
}

pub(super) fn read_proc(path: &Path, pid: i32) -> Result<String, WorkloadAttestError> {
    std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            WorkloadAttestError::ProcessGone(pid)
        } else {
            WorkloadAttestError::Proc {
                pid,
                message: format!("{}: {e}", path.display()),
            }
        }
    })
}

/// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot).
pub(super) fn start_time(proc_dir: &Path, pid: i32) -> Result<u64, WorkloadAttestError> {
    let stat = read_proc(&proc_dir.join("stat"), pid)?;
    parse_start_time(&stat).ok_or_else(|| WorkloadAttestError::Proc {
        pid,
        message: "malformed stat".into(),
    })
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: count fields from the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn supplementary_gids(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
