//! The Signet agent: attests its node to the server, keeps the entries it is
//! authorized for in sync, issues and rotates their X.509-SVIDs and serves
//! them to local workloads over the SPIFFE Workload API.
#![forbid(unsafe_code)]

pub mod app;
pub mod attest;
pub mod audit;
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

pub use config::{Bootstrap, FileConfig, RuntimeConfig};
