//! Join-token node attestation: a single-use token with a TTL, created by an
//! admin, burned in the same transaction that records the agent. The agent's
//! ID is `spiffe://<td>/signet/agent/join_token/<token>`.

use std::sync::Arc;
use std::time::Duration;

use signet_core::clock::unix_seconds;
use signet_core::SpiffeId;

use super::{AttestError, AttestedAgent};
use crate::ca::{csr_public_key, CertificateAuthority};
use crate::datastore::{AgentRecord, DataStore, DataStoreError};

pub const ATTESTATION_TYPE: &str = "join_token";

#[derive(Clone)]
pub struct JoinTokenAttestor {
    ds: Arc<dyn DataStore>,
    ca: Arc<CertificateAuthority>,
}

impl JoinTokenAttestor {
    pub fn new(ds: Arc<dyn DataStore>, ca: Arc<CertificateAuthority>) -> Self {
        Self { ds, ca }
    }

    /// Creates a token valid for `ttl`; returns it and its expiry (unix secs).
    pub async fn generate(&self, ttl: Duration) -> Result<(String, i64), DataStoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let expires_at = unix_seconds(self.ca.now() + ttl);
        self.ds.create_join_token(&token, expires_at).await?;
        Ok((token, expires_at))
    }

    pub fn agent_id(&self, token: &str) -> Option<SpiffeId> {
        self.ca
            .trust_domain()
            .id(&format!("/signet/agent/{ATTESTATION_TYPE}/{token}"))
            .ok()
    }

    /// Checks the token, burns it, records the agent and issues its SVID.
    pub async fn attest(&self, token: &str, csr: &[u8]) -> Result<AttestedAgent, AttestError> {
        // A token that cannot be part of a SPIFFE ID was never issued by us.
        let agent_id = self
            .agent_id(token)
            .ok_or(DataStoreError::JoinTokenNotFound)?;
        let public_key = csr_public_key(csr).map_err(|e| AttestError::BadCsr(e.to_string()))?;
        // Signed before the transaction so the token burn and the agent record
        // commit together; if the token is refused the certificate is dropped.
        let svid = self.ca.issue_x509_svid(
            &agent_id,
            &public_key,
            &[],
            Some(self.ca.default_svid_ttl()),
        )?;
        let now = unix_seconds(self.ca.now());
        let record = AgentRecord {
            spiffe_id: agent_id,
            attestation_type: ATTESTATION_TYPE.to_owned(),
            serial: svid.serial_hex.clone(),
            expires_at: unix_seconds(svid.not_after),
            banned: false,
            attested_at: now,
            selectors: vec![],
        };
        let record = self.ds.attest_with_join_token(token, now, record).await?;
        Ok(AttestedAgent { record, svid })
    }
}
