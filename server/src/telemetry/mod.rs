//! Operating the server: Prometheus metrics and what its `/live`, `/ready`
//! and `/metrics` endpoint answers (served by `signet_runtime::probes`;
//! per-RPC latency: `signet_runtime::rpc`; systemd notification:
//! `signet_runtime::systemd`).

pub mod metrics;
pub mod probes;

pub use metrics::Metrics;
