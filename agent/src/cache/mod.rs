//! The SVIDs this agent holds for workloads and the task that issues and
//! rotates them. One task owns all rotation state; everyone else reads the
//! published [`state::Snapshot`] through a watch channel. JWT-SVIDs are
//! minted on demand and cached in [`jwt`].

pub mod jwt;
pub mod manager;
pub mod persist;
pub mod state;

use async_trait::async_trait;
use signet_proto::node::{BatchSignX509SvidRequest, SignX509SvidParams};

use crate::node_client::LateConnector;
pub use jwt::{JwtMinter, JwtSvidCache, MintError, MintedJwt, NodeMinter};
pub use manager::{CacheManager, SyncUpdate};
pub use state::{CachedEntry, Revocations, Snapshot, Svid, Tainted};

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
    /// The signing authority as the server names it; empty if it did not.
    pub authority_id: String,
}

/// Whoever signs workload CSRs: the server in production, a test CA in tests.
#[async_trait]
pub trait SvidSigner: Send + Sync {
    async fn batch_sign(&self, requests: Vec<SignRequest>) -> Result<Vec<SignResult>, String>;
}

/// Signs through the server's `BatchSignX509Svid`.
pub struct NodeSigner {
    pub connector: LateConnector,
}

#[async_trait]
impl SvidSigner for NodeSigner {
    async fn batch_sign(&self, requests: Vec<SignRequest>) -> Result<Vec<SignResult>, String> {
        let connector = self.connector.get().map_err(|e| e.to_string())?;
        let mut client = connector.client().await.map_err(|e| e.to_string())?;
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
                connector.reset().await;
                return Err(format!("{:?}: {}", status.code(), status.message()));
            }
        };
        Ok(response
            .results
            .into_iter()
            .map(|r| SignResult {
                entry_id: r.entry_id,
                authority_id: r.authority_id,
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

/// An X.509 authority's id: lowercase hex SHA-256 of its certificate DER.
pub fn authority_id(ca_der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(ca_der))
}

/// The id of the bundle CA that `chain` validates against, if any; used when
/// the server did not name the authority (or for SVIDs loaded from disk).
pub fn issuing_authority(
    chain: &[Vec<u8>],
    bundle: &[Vec<u8>],
    now: std::time::SystemTime,
) -> Option<String> {
    bundle
        .iter()
        .find(|ca| {
            signet_core::x509::validate_x509_svid(chain, std::slice::from_ref(*ca), now).is_ok()
        })
        .map(|ca| authority_id(ca))
}
