//! The server's two gRPC APIs and what they share: the Node API for agents
//! (TLS, agents authenticated by their SVID) and the Admin API for the CLI
//! (Unix socket, guarded by file permissions).

pub mod admin;
pub mod auth;
pub mod batch_sign;
pub mod convert;
pub mod downstream;
pub mod entry_create;
pub mod introspect;
pub mod last_seen;
pub mod node;
pub mod status;
pub mod sync;
pub mod tls;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use crate::attest::{Attestors, JoinTokenAttestor};
use crate::ca::CertificateAuthority;
use crate::datastore::DataStore;
use crate::events::ChangeBus;
use crate::revocation::Revocations;
use crate::telemetry::Metrics;

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct ServerState {
    pub ds: Arc<dyn DataStore>,
    pub ca: Arc<CertificateAuthority>,
    pub bus: ChangeBus,
    pub revocations: Revocations,
    /// This server's id among those sharing the datastore.
    pub server_id: String,
    /// Appends this server's decisions to the audit chain.
    pub audit: crate::audit::Auditor,
    /// `[rate_limit]`: per source address and per agent.
    pub limits: Arc<crate::ratelimit::RateLimiters>,
    /// Where handlers report what the anomaly detectors look at.
    pub anomalies: crate::anomaly::Anomalies,
    /// When each agent last called this server.
    pub last_seen: Arc<last_seen::LastSeen>,
    /// The dashboard's login links; `None` when `[dashboard] bind` is unset.
    pub dashboard: Option<Arc<crate::dashboard::Link>>,
    /// Fetches federated trust domains' bundles (on request, for refresh).
    pub federation: crate::federation::Federation,
    pub join_tokens: JoinTokenAttestor,
    pub join_token_ttl: Duration,
    /// The enabled node attestation methods by name (x509pop when
    /// `[node_attestor.x509pop]` names a CA bundle).
    pub attestors: Attestors,
    pub metrics: Arc<Metrics>,
    /// Turns true when the server is stopping; long-lived streams end then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}
