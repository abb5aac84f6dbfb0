//! Attestation: proving to the server which node this agent runs on
//! (`node`), and finding out which workload is calling us (`workload`).

pub mod node;
pub mod workload;
pub mod x509pop;

use std::time::SystemTime;

use signet_core::SpiffeId;

/// The agent's own X.509-SVID: its mTLS client certificate to the server.
#[derive(Clone)]
pub struct AgentSvid {
    pub spiffe_id: SpiffeId,
    /// DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 DER; never logged, wiped when dropped.
    pub key_pkcs8: zeroize::Zeroizing<Vec<u8>>,
    pub not_after: SystemTime,
    /// When the agent obtained it: rotation counts from here.
    pub received_at: SystemTime,
    /// Bumped on every renewal so clients know to reconnect.
    pub generation: u64,
    /// The X.509 authority that signed it (empty if unknown).
    pub authority_id: String,
}

impl std::fmt::Debug for AgentSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSvid")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("not_after", &self.not_after)
            .field("generation", &self.generation)
            .field("authority_id", &self.authority_id)
            .finish_non_exhaustive()
    }
}
