//! Operating the server: Prometheus metrics, the `/live`, `/ready` and
//! `/metrics` HTTP endpoints (per-RPC latency: `signet_runtime::rpc`; systemd notification: `signet_runtime::systemd`).

pub mod http;
pub mod metrics;

pub use metrics::Metrics;
