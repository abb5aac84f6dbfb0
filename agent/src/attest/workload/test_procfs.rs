//! Test doubles for the workload attestors' procfs: a `stat` line and an
//! attestor that swaps the process out from under its caller.

use std::path::PathBuf;

use async_trait::async_trait;
use signet_core::Selector;

use super::{AttestOptions, PeerInfo, WorkloadAttestError, WorkloadAttestor};

/// A `/proc/<pid>/stat` line for `pid (comm)` with `start` as field 22
/// (the start time); the other fields hold their own numbers.
pub fn stat_line(pid: i32, comm: &str, start: u64) -> String {
    let mut fields: Vec<String> = (4..=52).map(|n| n.to_string()).collect();
    fields[22 - 4] = start.to_string();
    format!("{pid} ({comm}) S {}", fields.join(" "))
}

/// Replaces the process (writes a new start time to `stat`) while it
/// attests, answering `selector`.
pub struct ReusesPid {
    pub pid: i32,
    pub stat: PathBuf,
    pub selector: &'static str,
}

#[async_trait]
impl WorkloadAttestor for ReusesPid {
    async fn attest(
        &self,
        _: &PeerInfo,
        _: AttestOptions,
    ) -> Result<Vec<Selector>, WorkloadAttestError> {
        std::fs::write(&self.stat, stat_line(self.pid, "app", 222)).unwrap();
        Ok(vec![Selector::parse(self.selector).unwrap()])
    }
}
