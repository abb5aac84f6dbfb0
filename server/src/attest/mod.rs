//! Node attestation, server half: an attestor checks the agent's evidence and
//! decides its SPIFFE ID; the agent SVID is issued for the CSR's key only.

pub mod join_token;
pub mod x509pop;

use crate::ca::{CaError, IssuedSvid};
use crate::datastore::{AgentRecord, DataStoreError};

pub use join_token::JoinTokenAttestor;
pub use x509pop::{X509PopAttestor, X509PopError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum AttestError {
    #[error("attestation request carries no attestation method")]
    MissingMethod,
    #[error("invalid CSR: {0}")]
    BadCsr(String),
    #[error(transparent)]
    DataStore(#[from] DataStoreError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    X509Pop(#[from] X509PopError),
}

/// An agent the server now vouches for, and its first SVID.
#[derive(Debug, Clone)]
pub struct AttestedAgent {
    pub record: AgentRecord,
    pub svid: IssuedSvid,
}
