//! Join-token node attestation: a single-use token with a TTL, created by an
//! admin, burned in the same transaction that records the agent. The agent's
//! ID is `spiffe://<td>/signet/agent/join_token/<token>` (a burned token
//! names the agent; an unused one is a secret). The datastore holds only the
//! token's SHA-256, and nothing is signed for a token that is not there.

use std::sync::Arc;
use std::time::Duration;

use signet_core::clock::unix_seconds;
use signet_core::SpiffeId;
use subtle::ConstantTimeEq;

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
        let expires_at = self
            .ca
            .now()
            .checked_add(ttl)
            .map(unix_seconds)
            .ok_or_else(|| DataStoreError::InvalidArgument("join token TTL out of range".into()))?;
        self.ds
            .create_join_token(&token_sha256(&token), expires_at)
            .await?;
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
        let hash = token_sha256(token);
        // Checked before anything is signed: a guessed token costs a read.
        let now = unix_seconds(self.ca.now());
        match self.ds.join_token(&hash).await? {
            None => return Err(DataStoreError::JoinTokenNotFound.into()),
            // The index matched the hash; compare it whole, in constant time.
            Some((stored, _)) if !bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) => {
                return Err(DataStoreError::JoinTokenNotFound.into())
            }
            Some((_, expires_at)) if expires_at <= now => {
                return Err(DataStoreError::JoinTokenExpired.into())
            }
            Some(_) => {}
        }
        let public_key = csr_public_key(csr).map_err(|e| AttestError::BadCsr(e.to_string()))?;
        // Signed before the transaction so the token burn and the agent record
        // commit together; if the burn is refused (a concurrent attest took the
        // token) the certificate is dropped unsent.
        let svid = self.ca.issue_x509_svid(
            &agent_id,
            &public_key,
            &[],
            Some(self.ca.default_svid_ttl()),
        )?;
        let record = AgentRecord {
            spiffe_id: agent_id,
            attestation_type: ATTESTATION_TYPE.to_owned(),
            serial: svid.serial_hex.clone(),
            expires_at: unix_seconds(svid.not_after),
            banned: false,
            attested_at: now,
            selectors: vec![],
        };
        let record = self.ds.attest_with_join_token(&hash, now, record).await?;
        Ok(AttestedAgent { record, svid })
    }
}

/// How a join token is stored and looked up: SHA-256, lowercase hex. A
/// token is 122 random bits, so a plain hash cannot be reversed.
pub fn token_sha256(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}
