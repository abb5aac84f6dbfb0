//! Workload attestation: turning the credentials of a Workload API caller
//! into selectors. One trait, one module per attestor (`unix`, `container`,
//! `systemd`), composed with per-attestor timeouts in `composite`; `cache`
//! reuses a process's selectors for a short while.

pub mod cache;
pub mod cgroup;
pub mod composite;
pub mod container;
pub mod peer;
pub mod ptrace;
pub mod systemd;
#[cfg(test)]
pub(crate) mod test_procfs;
pub mod unix;

use async_trait::async_trait;
use signet_core::Selector;

/// What the kernel tells us about the process on the other end of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    pub pid: Option<i32>,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadAttestError {
    #[error("the caller's pid is unknown")]
    NoPid,
    #[error("process {0} exited during attestation")]
    ProcessGone(i32),
    #[error("process {0} was replaced during attestation (pid reused)")]
    PidReused(i32),
    #[error(
        "the process that connected (pid {0}) has exited; its pid may name another process now"
    )]
    CallerExited(i32),
    #[error("process {0} runs another executable than when it connected")]
    ExecutableChanged(i32),
    #[error("cannot read process {pid}: {message}")]
    Proc { pid: i32, message: String },
    #[error("attestation task failed: {0}")]
    Task(String),
    #[error("attestor did not finish within {0:?}")]
    Timeout(std::time::Duration),
}

impl WorkloadAttestError {
    /// The caller cannot be told apart from another process: the whole
    /// attestation fails, whatever other attestors found.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::NoPid
                | Self::ProcessGone(_)
                | Self::PidReused(_)
                | Self::CallerExited(_)
                | Self::ExecutableChanged(_)
        )
    }
}

/// What the caller of an attestor needs, so costly selectors are only
/// computed when some entry could use them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttestOptions {
    /// Hash the workload's binary (`unix:sha256`).
    pub hash_binary: bool,
}

#[async_trait]
pub trait WorkloadAttestor: Send + Sync {
    async fn attest(
        &self,
        peer: &PeerInfo,
        options: AttestOptions,
    ) -> Result<Vec<Selector>, WorkloadAttestError>;
}
