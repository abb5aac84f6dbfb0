//! Operating the server: Prometheus metrics, the `/live`, `/ready` and
//! `/metrics` HTTP endpoints, per-RPC latency (systemd notification: `signet_runtime::systemd`).

pub mod http;
pub mod metrics;
pub mod rpc;

pub use metrics::Metrics;
