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

use async_trait::async_trait;
use signet_proto::node::attest_params::Method;

use super::{
    issue_agent, method_name, AttestError, AttestedAgent, Commit, Exchange, NodeAttestor, Verdict,
};
use crate::ca::CertificateAuthority;
use crate::datastore::{DataStore, DataStoreError};

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

    /// Checks the token (read only: the burn commits with the agent).
    async fn check(&self, token: &str) -> Result<Verdict, AttestError> {
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
        Ok(Verdict {
            agent_id,
            selectors: vec![],
            commit: Commit::BurnJoinToken { token_sha256: hash },
        })
    }

    /// Checks the token, burns it, records the agent and issues its SVID.
    pub async fn attest(&self, token: &str, csr: &[u8]) -> Result<AttestedAgent, AttestError> {
        let verdict = self.check(token).await?;
        issue_agent(self.ds.as_ref(), &self.ca, ATTESTATION_TYPE, verdict, csr).await
    }
}

#[async_trait]
impl NodeAttestor for JoinTokenAttestor {
    fn method(&self) -> &'static str {
        ATTESTATION_TYPE
    }

    async fn begin(&self, evidence: &Method) -> Result<Exchange, AttestError> {
        match evidence {
            Method::JoinToken(token) => Ok(Exchange::Done(self.check(token).await?)),
            other => Err(AttestError::WrongMethod(method_name(other))),
        }
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
