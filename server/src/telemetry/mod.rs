//! Operating the server: Prometheus metrics, the `/live`, `/ready` and
//! `/metrics` HTTP endpoints, per-RPC latency, and systemd readiness.

pub mod http;
pub mod metrics;
pub mod rpc;
pub mod systemd;

pub use metrics::Metrics;
