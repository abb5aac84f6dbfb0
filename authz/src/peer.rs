//! Requests for a peer a service has authenticated: by the X509-SVID its
//! TLS stack verified (the leaf), or by a JWT-SVID the agent validated
//! (see `agent::AgentPolicies::jwt_principal`).

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use signet_core::{SpiffeId, TrustDomain};

use crate::request::{AuthzRequest, Principal};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("peer certificate: {0}")]
    Certificate(String),
    #[error("peer certificate holds no SPIFFE ID (exactly one spiffe:// URI SAN)")]
    NoSpiffeId,
    #[error("JWT-SVID: {0}")]
    Jwt(String),
    #[error("agent: {0}")]
    Agent(String),
}

/// A verified peer: who, and how long its SVID has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub spiffe_id: SpiffeId,
    pub svid_remaining: Option<Duration>,
}

impl Peer {
    /// The peer of a TLS session, from its leaf certificate (DER). The
    /// chain must have been verified already (by rustls with the SPIFFE
    /// bundles): this only reads it.
    pub fn from_x509_svid(leaf_der: &[u8], now: SystemTime) -> Result<Self, PeerError> {
        let info = signet_core::x509::cert_info(leaf_der)
            .map_err(|e| PeerError::Certificate(e.to_string()))?;
        Ok(Self {
            spiffe_id: info.spiffe_id.ok_or(PeerError::NoSpiffeId)?,
            svid_remaining: info.not_after.duration_since(now).ok(),
        })
    }

    /// The question "may this peer do `action` on `resource`" at `now`,
    /// with the service's `attributes`; `own` is the service's trust
    /// domain (a peer of another one is federated).
    pub fn request(
        &self,
        own: &TrustDomain,
        action: &str,
        resource: &str,
        now: SystemTime,
        attributes: Map<String, Value>,
    ) -> AuthzRequest {
        AuthzRequest {
            principal: Principal::new(self.spiffe_id.clone()),
            action: action.to_owned(),
            resource: resource.to_owned(),
            time: now,
            source_address: None,
            federated: !self.spiffe_id.is_member_of(own),
            svid_remaining: self.svid_remaining,
            attributes,
        }
    }
}
