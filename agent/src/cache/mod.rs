//! The SVIDs this agent holds for workloads and the task that issues and
//! rotates them. One task owns all rotation state; everyone else reads the
//! published [`state::Snapshot`] through a watch channel. JWT-SVIDs are
//! minted on demand and cached in [`jwt`].

pub mod jwt;
pub mod manager;
pub mod state;

use std::sync::Arc;

use async_trait::async_trait;
use signet_proto::node::{BatchSignX509SvidRequest, SignX509SvidParams};

use crate::node_client::NodeConnector;
pub use jwt::{JwtMinter, JwtSvidCache, MintError, MintedJwt, NodeMinter};
pub use manager::{CacheManager, SyncUpdate};
pub use state::{CachedEntry, Snapshot, Svid};

/// One CSR for one entry.
#[derive(Debug, Clone)]
pub struct SignRequest {
    pub entry_id: String,
    pub csr: Vec<u8>,
}

/// Per-item outcome: the DER chain, or the server's reason.
#[derive(Debug, Clone)]
pub struct SignResult {
    pub entry_id: String,
    pub chain: Result<Vec<Vec<u8>>, String>,
}

/// Whoever signs workload CSRs: the server in production, a test CA in tests.
#[async_trait]
pub trait SvidSigner: Send + Sync {
    async fn batch_sign(&self, requests: Vec<SignRequest>) -> Result<Vec<SignResult>, String>;
}

/// Signs through the server's `BatchSignX509Svid`.
pub struct NodeSigner {
    pub connector: Arc<NodeConnector>,
}

#[async_trait]
impl SvidSigner for NodeSigner {
    async fn batch_sign(&self, requests: Vec<SignRequest>) -> Result<Vec<SignResult>, String> {
        let mut client = self.connector.client().await.map_err(|e| e.to_string())?;
        let params = requests
            .into_iter()
            .map(|r| SignX509SvidParams {
                entry_id: r.entry_id,
                csr: r.csr,
            })
            .collect();
        let response = match client
            .batch_sign_x509_svid(BatchSignX509SvidRequest { params })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => {
                self.connector.reset().await;
                return Err(format!("{:?}: {}", status.code(), status.message()));
            }
        };
        Ok(response
            .results
            .into_iter()
            .map(|r| SignResult {
                entry_id: r.entry_id,
                chain: if r.error_code == 0 {
                    Ok(r.svid_chain)
                } else {
                    Err(format!(
                        "{:?}: {}",
                        tonic::Code::from_i32(r.error_code),
                        r.error_message
                    ))
                },
            })
            .collect())
    }
}
