//! Signet server: the trust domain's CA, the registration entries and agents
//! in a datastore, the Node API (agents, mTLS) and the Admin API (CLI, Unix
//! socket). `app::run` wires them; everything else is one concept per module.
#![forbid(unsafe_code)]

pub mod alias;
pub mod anomaly;
pub mod api;
pub mod app;
pub mod attest;
pub mod audit;
pub mod bundle;
pub mod ca;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod datastore;
pub mod events;
pub mod federation;
pub mod http_listener;
pub mod oidc;
pub mod ratelimit;
pub mod revocation;
pub mod server_id;
pub mod telemetry;

pub use config::{FileConfig, RuntimeConfig};
