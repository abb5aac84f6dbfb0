//! The Signet agent: attests its node to the server, keeps the entries it is
//! authorized for in sync, issues and rotates their X.509-SVIDs and serves
//! them to local workloads over the SPIFFE Workload API.
#![forbid(unsafe_code)]

pub mod app;
pub mod attest;
pub mod backoff;
pub mod cache;
pub mod cli;
pub mod config;
pub mod health;
pub mod node_client;
pub mod storage;
pub mod sync;
pub mod telemetry;
#[cfg(test)]
pub mod test_support;
pub mod workload_api;

/// What the fuzz targets in `fuzz/` reach that is otherwise private: the
/// Workload API's HTTP/2 header relay and its HPACK decoder. Not part of
/// the agent's API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::workload_api::authority::{HpackDecoder, RelayError, Rewriter};
}

pub use config::{Bootstrap, FileConfig, RuntimeConfig};
