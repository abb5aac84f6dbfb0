//! The server's Prometheus metrics, in one registry. Handlers count through
//! the typed methods here; `/metrics` encodes the registry as text.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::anomaly::Kind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttestLabels {
    pub method: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FederationLabels {
    pub trust_domain: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub service: String,
    pub method: String,
}

type HistogramFamily = Family<RpcLabels, Histogram, fn() -> Histogram>;

fn rpc_histogram() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

pub struct Metrics {
    registry: Mutex<Registry>,
    x509_svids_issued: Counter,
    jwt_svids_issued: Counter,
    node_attestations: Family<AttestLabels, Counter>,
    rpc_duration: HistogramFamily,
    connected_agents: Gauge,
    refused_connections: Family<ReasonLabel, Counter>,
    federation_refreshes: Family<FederationLabels, Counter>,
    bundle_endpoint_requests: Counter,
    rate_limited: Family<LimitLabel, Counter>,
    anomalies: Family<KindLabel, Counter>,
    anomaly_observations_dropped: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let x509_svids_issued = Counter::default();
        registry.register(
            "signet_server_x509_svids_issued",
            "X.509-SVIDs issued (agents and workloads)",
            x509_svids_issued.clone(),
        );
        let jwt_svids_issued = Counter::default();
        registry.register(
            "signet_server_jwt_svids_issued",
            "JWT-SVIDs minted",
            jwt_svids_issued.clone(),
        );
        let node_attestations = Family::<AttestLabels, Counter>::default();
        registry.register(
            "signet_server_node_attestations",
            "Node attestations by method and result (ok or the refusal's code)",
            node_attestations.clone(),
        );
        let rpc_duration: HistogramFamily = Family::new_with_constructor(rpc_histogram);
        registry.register(
            "signet_server_rpc_duration_seconds",
            "gRPC latency until the response (or its first message) is ready",
            rpc_duration.clone(),
        );
        let connected_agents = Gauge::default();
        registry.register(
            "signet_server_connected_agents",
            "Agents with an open Sync stream",
            connected_agents.clone(),
        );
        let refused_connections = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "signet_server_node_api_refused_connections",
            "Node API connections closed before serving (reason: address_limit, total_limit, handshake_failed, handshake_timeout)",
            refused_connections.clone(),
        );
        let federation_refreshes = Family::<FederationLabels, Counter>::default();
        registry.register(
            "signet_server_federation_refreshes",
            "Fetches of a federated trust domain's bundle endpoint (result: ok, unchanged, or the refusal: connect, tls, http, timeout, too_large, invalid, wrong_trust_domain, no_endpoint_bundle, older_sequence, store)",
            federation_refreshes.clone(),
        );
        let bundle_endpoint_requests = Counter::default();
        registry.register(
            "signet_server_bundle_endpoint_requests",
            "Bundle documents this server's bundle endpoint served",
            bundle_endpoint_requests.clone(),
        );
        let rate_limited = Family::<LimitLabel, Counter>::default();
        registry.register(
            "signet_server_rate_limited",
            "Calls refused for being over a rate limit (limit: attestation, x509_signing, jwt_minting)",
            rate_limited.clone(),
        );
        let anomalies = Family::<KindLabel, Counter>::default();
        registry.register(
            "signet_server_anomalies",
            "Anomaly findings by kind (issuance_rate, attestation_failures, new_source_address, new_audience, new_agent, clock_skew)",
            anomalies.clone(),
        );
        let anomaly_observations_dropped = Counter::default();
        registry.register(
            "signet_server_anomaly_observations_dropped",
            "Observations the anomaly detectors could not take (their queue was full)",
            anomaly_observations_dropped.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            anomalies,
            anomaly_observations_dropped,
            rate_limited,
            federation_refreshes,
            bundle_endpoint_requests,
            x509_svids_issued,
            jwt_svids_issued,
            node_attestations,
            rpc_duration,
            connected_agents,
            refused_connections,
        }
    }

    /// Exposes the CA's count of X.509 certificates signed (whatever
    /// became of them), as `signet_server_ca_x509_signatures_total`.
    pub fn register_x509_signatures(&self, counter: Counter) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register(
                "signet_server_ca_x509_signatures",
                "X.509 certificates the CA signed, delivered or not",
                counter,
            );
    }

    pub fn refused_connection(&self, reason: &str) {
        self.refused_connections
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A fetch of `trust_domain`'s bundle endpoint ended with `result`.
    pub fn federation_refresh(&self, trust_domain: &str, result: &str) {
        self.federation_refreshes
            .get_or_create(&FederationLabels {
                trust_domain: trust_domain.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// A finding of anomaly `kind`.
    pub fn anomaly(&self, kind: &str) {
        self.anomalies
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Agents with a Sync stream open on this server.
    pub fn connected_agents(&self) -> i64 {
        self.connected_agents.get()
    }

    /// X.509- and JWT-SVIDs issued by this server since it started.
    pub fn svids_issued_total(&self) -> u64 {
        self.x509_svids_issued.get() + self.jwt_svids_issued.get()
    }

    /// Findings of every kind so far.
    pub fn anomalies_found(&self) -> u64 {
        Kind::ALL
            .iter()
            .map(|k| {
                self.anomalies
                    .get_or_create(&KindLabel {
                        kind: k.name().to_owned(),
                    })
                    .get()
            })
            .sum()
    }

    pub fn anomaly_observation_dropped(&self) {
        self.anomaly_observations_dropped.inc();
    }

    /// A call refused by the rate limit `limit`.
    pub fn rate_limited(&self, limit: &str) {
        self.rate_limited
            .get_or_create(&LimitLabel {
                limit: limit.to_owned(),
            })
            .inc();
    }

    pub fn bundle_endpoint_request(&self) {
        self.bundle_endpoint_requests.inc();
    }

    pub fn x509_svid_issued(&self) {
        self.x509_svids_issued.inc();
    }

    pub fn x509_svids_issued(&self, n: u64) {
        self.x509_svids_issued.inc_by(n);
    }

    pub fn jwt_svid_issued(&self) {
        self.jwt_svids_issued.inc();
    }

    /// `result`: `ok`, or the refusal's status code in snake case.
    pub fn node_attestation(&self, method: &str, result: &str) {
        self.node_attestations
            .get_or_create(&AttestLabels {
                method: method.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts a Sync stream until the returned guard is dropped.
    pub fn agent_connected(&self) -> ConnectedGuard {
        self.connected_agents.inc();
        ConnectedGuard(self.connected_agents.clone())
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

impl signet_runtime::rpc::ObserveRpc for Metrics {
    fn rpc(&self, service: &str, method: &str, took: Duration) {
        self.rpc_duration
            .get_or_create(&RpcLabels {
                service: service.to_owned(),
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }
}

/// Decrements the connected-agents gauge when dropped.
pub struct ConnectedGuard(Gauge);

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A status code as a metric label: `ok`, `permission_denied`, ...
pub fn code_label(code: tonic::Code) -> String {
    let text = format!("{code:?}");
    let mut out = String::with_capacity(text.len() + 4);
    for (i, c) in text.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_runtime::rpc::ObserveRpc;

    #[test]
    fn text_has_every_metric_with_its_labels() {
        let m = Metrics::new();
        m.x509_svid_issued();
        m.node_attestation("x509pop", "ok");
        m.rpc("signet.node.Node", "Attest", Duration::from_millis(3));
        let _g = m.agent_connected();
        let text = m.encode();
        assert!(
            text.contains("signet_server_x509_svids_issued_total 1"),
            "{text}"
        );
        assert!(
            text.contains("signet_server_jwt_svids_issued_total 0"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"signet_server_node_attestations_total{method="x509pop",result="ok"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"signet_server_rpc_duration_seconds_count{service="signet.node.Node",method="Attest"} 1"#), "{text}");
        assert!(text.contains("signet_server_connected_agents 1"), "{text}");
        assert_eq!(
            code_label(tonic::Code::PermissionDenied),
            "permission_denied"
        );
        assert_eq!(code_label(tonic::Code::Ok), "ok");
    }
}
