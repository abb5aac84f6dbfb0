//! The SVIDs this agent holds for workloads and the task that issues and
//! rotates them. One task owns all rotation state; everyone else reads the
//! published [`state::Snapshot`] through a watch channel. JWT-SVIDs are
//! minted on demand and cached in [`jwt`].

pub mod jwt;
pub mod manager;
pub mod persist;
pub mod policies;
pub mod state;

use async_trait::async_trait;
use signet_proto::node::{BatchSignX509SvidRequest, SignX509SvidParams};

use crate::node_client::{CallError, LateConnector};
pub use jwt::{JwtMinter, JwtSvidCache, MintError, NodeMinter};
pub use manager::{CacheManager, SyncUpdate};
pub use policies::HeldPolicies;
pub use state::{CachedEntry, FederatedBundles, Revocations, Snapshot, Svid, Tainted};

/// One CSR for one entry.
#[derive(Debug, Clone)]
pub struct SignRequest {
    pub entry_id: String,
    pub csr: Vec<u8>,
}

/// Why an SVID was not signed, and so when to ask again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The server was unreachable, busy or slow, or something failed here:
    /// the same request may succeed after a backoff.
    #[error("{0}")]
    Retryable(String),
    /// The server refused this request (the entry is not this agent's, the
    /// CSR is invalid): asking again soon would be refused the same way.
    #[error("{0}")]
    Terminal(String),
}

impl SignError {
    /// The server's answer `code` as a retryable or terminal refusal.
    pub fn from_status(code: tonic::Code, message: &str) -> Self {
        use tonic::Code;
        let why = format!("{code:?}: {message}");
        match code {
            Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented => Self::Terminal(why),
            _ => Self::Retryable(why),
        }
    }
}

/// Per-item outcome: the DER chain, or the server's reason.
#[derive(Debug, Clone)]
pub struct SignResult {
    pub entry_id: String,
    pub chain: Result<Vec<Vec<u8>>, SignError>,
    /// The signing authority as the server names it; empty if it did not.
    pub authority_id: String,
}

/// Whoever signs workload CSRs: the server in production, a test CA in tests.
#[async_trait]
pub trait SvidSigner: Send + Sync {
    async fn batch_sign(&self, requests: Vec<SignRequest>) -> Result<Vec<SignResult>, SignError>;
}

/// Signs through the server's `BatchSignX509Svid`.
pub struct NodeSigner {
    pub connector: LateConnector,
}

#[async_trait]
impl SvidSigner for NodeSigner {
    async fn batch_sign(&self, requests: Vec<SignRequest>) -> Result<Vec<SignResult>, SignError> {
        let retryable = |e: &dyn std::fmt::Display| SignError::Retryable(e.to_string());
        let connector = self.connector.get().map_err(|e| retryable(&e))?;
        let request = BatchSignX509SvidRequest {
            params: requests
                .into_iter()
                .map(|r| SignX509SvidParams {
                    entry_id: r.entry_id,
                    csr: r.csr,
                })
                .collect(),
        };
        let response = connector
            .call(|mut client| {
                let request = request.clone();
                async move { client.batch_sign_x509_svid(request).await }
            })
            .await
            .map_err(|e| match e {
                CallError::Connect(e) => retryable(&e),
                CallError::Status { status, .. } => {
                    SignError::from_status(status.code(), status.message())
                }
            })?;
        Ok(response
            .results
            .into_iter()
            .map(|r| SignResult {
                entry_id: r.entry_id,
                authority_id: r.authority_id,
                chain: if r.error_code == 0 {
                    Ok(r.svid_chain)
                } else {
                    Err(SignError::from_status(
                        tonic::Code::from_i32(r.error_code),
                        &r.error_message,
                    ))
                },
            })
            .collect())
    }
}

pub use signet_core::x509::authority_id;

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
