//! Anomaly detection: handlers report what happened (`Observation`), one
//! task owns every detector's state and turns what is unusual into a
//! `Finding`: an audit record, `signet_server_anomalies_total{kind}`, a
//! warning, and the configured action (`log`, `throttle` or `ban` the
//! agent). Each rule and its thresholds are in `[anomaly]`; README
//! "Anomaly detection" states them.

mod act;
pub mod failures;
mod novelty;
pub mod rate;
mod task;

use std::sync::Arc;

use signet_core::SpiffeId;
use tokio::sync::mpsc;

use crate::config::AnomalySettings;
use crate::datastore::DataStore;
use crate::telemetry::Metrics;

pub use task::Context;

/// Observations queued before new ones are dropped (and counted): a flood
/// never makes a handler wait on detection.
const QUEUE: usize = 16_384;

/// What the detectors can find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An agent issuing far above its own moving baseline.
    IssuanceRate,
    /// A burst of failed attestations from one address or for one token.
    AttestationFailures,
    /// An x509pop (or TPM) agent attesting from an address it never used.
    NewSourceAddress,
    /// A JWT-SVID for an audience never seen for that SPIFFE ID.
    NewAudience,
    /// A workload SPIFFE ID signed for an agent it never ran on.
    NewAgent,
    /// An agent whose clock is off by more than `max_clock_skew`.
    ClockSkew,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::IssuanceRate,
        Kind::AttestationFailures,
        Kind::NewSourceAddress,
        Kind::NewAudience,
        Kind::NewAgent,
        Kind::ClockSkew,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::IssuanceRate => "issuance_rate",
            Kind::AttestationFailures => "attestation_failures",
            Kind::NewSourceAddress => "new_source_address",
            Kind::NewAudience => "new_audience",
            Kind::NewAgent => "new_agent",
            Kind::ClockSkew => "clock_skew",
        }
    }
}

/// Something unusual, about `subject`; `agent` when one agent can be
/// throttled or banned for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub subject: String,
    pub agent: Option<SpiffeId>,
    pub detail: String,
}

/// What a handler saw.
#[derive(Debug, Clone)]
pub enum Observation {
    /// X.509-SVIDs signed for `agent`'s workloads.
    X509Issued {
        agent: SpiffeId,
        spiffe_ids: Vec<SpiffeId>,
    },
    JwtMinted {
        agent: SpiffeId,
        spiffe_id: SpiffeId,
        audience: Vec<String>,
    },
    /// A refused node attestation; `token` is the join token's hash.
    AttestationRefused {
        source: String,
        token: Option<String>,
    },
    Attested {
        agent: SpiffeId,
        method: String,
        source: String,
    },
    /// The agent's clock minus ours, as it reported when opening Sync.
    ClockReport { agent: SpiffeId, skew_ms: i64 },
}

/// Where handlers report; cheap to clone.
#[derive(Clone)]
pub struct Anomalies {
    tx: mpsc::Sender<Observation>,
    metrics: Arc<Metrics>,
}

impl Anomalies {
    /// Starts the detection task.
    pub fn start(
        ds: Arc<dyn DataStore>,
        settings: AnomalySettings,
        ctx: Context,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let metrics = ctx.metrics.clone();
        let handle = tokio::spawn(task::run(rx, ds, settings, ctx));
        (Self { tx, metrics }, handle)
    }

    /// Queues `observation`; when the queue is full it is dropped and
    /// counted (`signet_server_anomaly_observations_dropped_total`).
    pub fn observe(&self, observation: Observation) {
        if self.tx.try_send(observation).is_err() {
            self.metrics.anomaly_observation_dropped();
        }
    }
}

/// A join token as detectors name it: the first 16 hex digits of its
/// SHA-256, never the token.
pub fn token_hash(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    hex::encode(digest.as_ref().get(..8).unwrap_or_default())
}
