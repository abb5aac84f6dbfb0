//! Operating the agent: Prometheus metrics, the `/live`, `/ready` and
//! `/metrics` HTTP endpoints (systemd notification: `signet_runtime::systemd`).

pub mod http;
pub mod metrics;
pub mod svids;

pub use http::Readiness;
pub use metrics::Metrics;
