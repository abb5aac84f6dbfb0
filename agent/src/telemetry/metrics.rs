//! The agent's Prometheus metrics, registered once and shared: the parts of
//! the agent record into them, `/metrics` encodes them.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttestorLabel {
    pub attestor: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// The Workload API's RPCs, as the `method` label spells them.
pub const WORKLOAD_API_METHODS: &[&str] = &[
    "FetchX509SVID",
    "FetchX509Bundles",
    "FetchJWTSVID",
    "FetchJWTBundles",
    "ValidateJWTSVID",
];

type Histograms = Family<MethodLabel, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    /// Workload X.509-SVIDs received from the server.
    pub svids_issued: Counter,
    /// Workload X.509-SVIDs replaced by a newer one for the same entry.
    pub svid_rotations: Counter,
    /// Workload API calls refused because attestation failed.
    pub attestation_failures: Counter,
    /// Workload API calls refused because their uid was over its rate.
    pub rate_limited: Counter,
    /// Workload audit records that could not be written (queue full or
    /// disk error).
    pub audit_dropped: Counter,
    /// One attestor failing or timing out (the others' selectors kept).
    pub attestor_errors: Family<AttestorLabel, Counter>,
    /// Open Workload API streams.
    pub connected_workloads: Gauge,
    /// The same count, for a drain to wait on (not poll).
    open_streams: tokio::sync::watch::Sender<u64>,
    /// Workload X.509-SVIDs held and valid.
    pub svids_held: Gauge,
    /// Seconds until the soonest held X.509-SVID expires (0 when none).
    pub seconds_to_next_expiry: Gauge<f64, AtomicU64>,
    /// Time to answer a Workload API call (for streams: to the first answer).
    pub workload_api_duration: Histograms,
    /// Workload API connections refused at accept, by reason
    /// (`uid_limit`, `total_limit`).
    pub refused_connections: Family<ReasonLabel, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("signet_agent");
        let m = Self {
            registry: Registry::default(),
            svids_issued: Counter::default(),
            svid_rotations: Counter::default(),
            attestation_failures: Counter::default(),
            rate_limited: Counter::default(),
            audit_dropped: Counter::default(),
            attestor_errors: Family::default(),
            connected_workloads: Gauge::default(),
            open_streams: tokio::sync::watch::channel(0).0,
            svids_held: Gauge::default(),
            seconds_to_next_expiry: Gauge::default(),
            workload_api_duration: Family::new_with_constructor(latency_histogram),
            refused_connections: Family::default(),
        };
        registry.register(
            "svids_issued",
            "Workload X.509-SVIDs received from the server",
            m.svids_issued.clone(),
        );
        registry.register(
            "svid_rotations",
            "Workload X.509-SVIDs replaced by a newer one for the same entry",
            m.svid_rotations.clone(),
        );
        registry.register(
            "workload_attestation_failures",
            "Workload API calls refused because workload attestation failed",
            m.attestation_failures.clone(),
        );
        registry.register(
            "audit_records_dropped",
            "Workload audit records not written (queue full or disk error)",
            m.audit_dropped.clone(),
        );
        registry.register(
            "workload_api_rate_limited",
            "Workload API calls refused because the caller's uid was over [workload_api] rate_limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "workload_attestor_errors",
            "Workload attestors that failed or timed out (the others' selectors were kept)",
            m.attestor_errors.clone(),
        );
        registry.register(
            "connected_workloads",
            "Open Workload API streams",
            m.connected_workloads.clone(),
        );
        registry.register(
            "svids_held",
            "Valid workload X.509-SVIDs held",
            m.svids_held.clone(),
        );
        registry.register(
            "seconds_to_next_expiry",
            "Seconds until the soonest held workload X.509-SVID expires",
            m.seconds_to_next_expiry.clone(),
        );
        registry.register(
            "workload_api_refused_connections",
            "Workload API connections refused at accept (reason: uid_limit, total_limit)",
            m.refused_connections.clone(),
        );
        registry.register(
            "workload_api_duration_seconds",
            "Workload API call latency (streams: until the first answer)",
            m.workload_api_duration.clone(),
        );
        // Every method shows from the start, not only once called.
        for method in WORKLOAD_API_METHODS {
            drop(m.workload_api_duration.get_or_create(&MethodLabel {
                method: (*method).to_owned(),
            }));
        }
        Self { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }

    pub fn refused_connection(&self, reason: &str) {
        self.refused_connections
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn attestor_failed(&self, attestor: &str) {
        self.attestor_errors
            .get_or_create(&AttestorLabel {
                attestor: attestor.to_owned(),
            })
            .inc();
    }

    /// Counts an open stream until the guard drops.
    pub fn stream_opened(self: &std::sync::Arc<Self>) -> StreamGuard {
        self.connected_workloads.inc();
        self.open_streams.send_modify(|n| *n += 1);
        StreamGuard(self.clone())
    }

    /// Resolves once no stream is open.
    pub async fn streams_closed(&self) {
        let mut open = self.open_streams.subscribe();
        // The sender lives in `self`: the wait cannot fail while we hold it.
        let _ = open.wait_for(|n| *n == 0).await;
    }
}

pub struct StreamGuard(std::sync::Arc<Metrics>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.connected_workloads.dec();
        self.0
            .open_streams
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}
/// Workload API calls, timed by `signet_runtime::rpc`'s layer, by method.
impl signet_runtime::rpc::ObserveRpc for Metrics {
    fn rpc(&self, _service: &str, method: &str, took: std::time::Duration) {
        self.workload_api_duration
            .get_or_create(&MethodLabel {
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }
}
