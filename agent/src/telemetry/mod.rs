//! Operating the agent: Prometheus metrics and what its `/live`, `/ready`
//! and `/metrics` endpoint answers (served by `signet_runtime::probes`;
//! systemd notification: `signet_runtime::systemd`).

pub mod metrics;
pub mod probes;
pub mod svids;

pub use metrics::Metrics;
pub use probes::{AgentProbes, Readiness};
