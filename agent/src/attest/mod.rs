//! Attestation: proving to the server which node this agent runs on
//! (`node`), and finding out which workload is calling us (`workload`).

pub mod key;
pub mod node;
pub mod tpm;
pub mod workload;
pub mod x509pop;

use std::time::SystemTime;

use signet_core::X509Svid;

/// The agent's own X.509-SVID: its mTLS client certificate to the server.
#[derive(Clone)]
pub struct AgentSvid {
    pub x509: X509Svid,
    /// Never logged; in memory wiped when dropped, or in the TPM.
    pub key: key::AgentKey,
    /// When the agent obtained it: rotation counts from here.
    pub received_at: SystemTime,
    /// Bumped on every renewal so clients know to reconnect.
    pub generation: u64,
}

impl std::fmt::Debug for AgentSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSvid")
            .field("x509", &self.x509)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}
