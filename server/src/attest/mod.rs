//! Node attestation, server half: a [`NodeAttestor`] per method checks the
//! agent's evidence (with a challenge/response exchange when the method
//! needs one) and decides its SPIFFE ID and selectors; [`issue_agent`] then
//! signs the agent SVID for the CSR's key and records the agent, the same
//! for every method. [`Attestors`] holds the enabled methods by name.

mod challenge;
pub mod join_token;
pub mod tpm;
pub mod x509pop;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use signet_core::clock::unix_seconds;
use signet_core::{Selector, SpiffeId};
use signet_proto::node::attest_params::Method;

use signet_core::X509Svid;

use crate::ca::{csr_public_key, CaError, CertificateAuthority};
use crate::datastore::{AgentRecord, DataStore, DataStoreError};

pub use join_token::JoinTokenAttestor;
pub use tpm::{TpmAttestor, TpmError};
pub use x509pop::{X509PopAttestor, X509PopError};

/// What an attestor decided, before anything is signed.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub agent_id: SpiffeId,
    pub selectors: Vec<Selector>,
    pub commit: Commit,
}

/// How the agent record is committed.
#[derive(Debug, Clone)]
pub enum Commit {
    /// Recorded (re-created after an eviction, refused when banned).
    Record,
    /// The join token is burned in the same transaction; refused if a
    /// concurrent attestation took it first.
    BurnJoinToken { token_sha256: String },
}

/// The first step of an attestation.
pub enum Exchange {
    Done(Verdict),
    /// The agent must answer `challenge`; `pending` checks the answer.
    Challenge {
        challenge: Vec<u8>,
        pending: Box<dyn PendingChallenge>,
    },
}

#[async_trait]
pub trait PendingChallenge: Send {
    /// Checks the agent's answer to the challenge.
    async fn answer(self: Box<Self>, response: &[u8]) -> Result<Verdict, AttestError>;
}

/// One node attestation method, server half.
#[async_trait]
pub trait NodeAttestor: Send + Sync + 'static {
    /// The method's name, as in the agent's ID and the metrics.
    fn method(&self) -> &'static str;
    /// Checks the evidence the agent sent with its first message.
    async fn begin(&self, evidence: &Method) -> Result<Exchange, AttestError>;
}

/// The name of the method `evidence` is for.
pub fn method_name(evidence: &Method) -> &'static str {
    match evidence {
        Method::JoinToken(_) => join_token::ATTESTATION_TYPE,
        Method::X509pop(_) => x509pop::ATTESTATION_TYPE,
        Method::Tpm(_) => tpm::ATTESTATION_TYPE,
    }
}

/// `<method>:<value>` node selectors, sorted, without duplicates; a value
/// a selector cannot hold (what a certificate says is not ours to trust)
/// is logged and left out.
pub fn node_selectors(method: &'static str, values: &[String]) -> Vec<Selector> {
    let mut out: Vec<Selector> = values
        .iter()
        .filter_map(|v| match Selector::new(method, v) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(method, value = %v, error = %e, "attested value cannot be a selector");
                None
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The enabled attestors by method name.
#[derive(Clone, Default)]
pub struct Attestors(BTreeMap<&'static str, Arc<dyn NodeAttestor>>);

impl Attestors {
    pub fn with(mut self, attestor: Arc<dyn NodeAttestor>) -> Self {
        self.0.insert(attestor.method(), attestor);
        self
    }

    pub fn get(&self, method: &str) -> Option<Arc<dyn NodeAttestor>> {
        self.0.get(method).cloned()
    }

    pub fn methods(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.keys().copied()
    }
}

/// Signs the agent SVID for `csr`'s key and records the agent as `verdict`
/// says, whatever the method. The certificate is signed before the
/// transaction so a token burn and the agent record commit together; if the
/// commit is refused the certificate is dropped unsent.
pub async fn issue_agent(
    ds: &dyn DataStore,
    ca: &CertificateAuthority,
    method: &str,
    verdict: Verdict,
    csr: &[u8],
) -> Result<AttestedAgent, AttestError> {
    let public_key = csr_public_key(csr).map_err(|e| AttestError::BadCsr(e.to_string()))?;
    let svid = ca.issue_x509_svid(
        &verdict.agent_id,
        &public_key,
        &[],
        Some(ca.default_svid_ttl()),
    )?;
    let now = unix_seconds(ca.now());
    let record = AgentRecord {
        spiffe_id: verdict.agent_id,
        attestation_type: method.to_owned(),
        serial: svid.serial_hex.clone(),
        expires_at: unix_seconds(svid.not_after),
        banned: false,
        attested_at: now,
        selectors: verdict.selectors,
    };
    let record = match verdict.commit {
        Commit::Record => ds.attest_agent(record).await?,
        Commit::BurnJoinToken { token_sha256 } => {
            ds.attest_with_join_token(&token_sha256, now, record)
                .await?
        }
    };
    Ok(AttestedAgent { record, svid })
}

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
    #[error(transparent)]
    Tpm(#[from] TpmError),
    #[error("the challenge response is missing")]
    MissingResponse,
    #[error("the challenge is unknown, already used or expired")]
    StaleChallenge,
    /// Evidence for another method reached this attestor.
    #[error("{0} evidence sent to another attestor")]
    WrongMethod(&'static str),
}

/// An agent the server now vouches for, and its first SVID.
#[derive(Debug, Clone)]
pub struct AttestedAgent {
    pub record: AgentRecord,
    pub svid: X509Svid,
}
