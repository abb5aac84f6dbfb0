//! Generated gRPC code for Signet's protocols.
//!
//! `workload` is the SPIFFE Workload API exactly as standardised (it has no
//! protobuf package, so it is generated into `_.rs`); `node` and `admin` are
//! Signet's own versioned APIs.
#![forbid(unsafe_code)]
#![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod uds;

/// The SPIFFE Workload API (service `SpiffeWorkloadAPI`, no package).
pub mod workload {
    tonic::include_proto!("_");
}

/// Agent <-> server (`signet.node.v1`).
pub mod node {
    tonic::include_proto!("signet.node.v1");
}

/// CLI <-> server (`signet.admin.v1`).
pub mod admin {
    tonic::include_proto!("signet.admin.v1");
}

/// The agent's authorization API (`signet.authz.v1`).
pub mod authz {
    tonic::include_proto!("signet.authz.v1");
}

/// The metadata key and value every Workload API request must carry.
pub const WORKLOAD_SECURITY_HEADER: &str = "workload.spiffe.io";
pub const WORKLOAD_SECURITY_HEADER_VALUE: &str = "true";
