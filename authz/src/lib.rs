//! Context-aware authorization for SPIFFE workloads, with policies in the
//! Cedar language and Cedar's own engine (`cedar-policy`, maintained by
//! AWS). One schema (`schema::SCHEMA`) says what a policy may speak of:
//! the principal is a workload (its SPIFFE ID, trust domain, path and path
//! segments, its entry's selectors and hints), the action one of `read`,
//! `write`, `delete`, the resource a service-defined id, and the context
//! the request's time, source address, whether the caller came through a
//! federated trust domain, the caller's SVID lifetime left, and attributes
//! the service supplies (network zone, device posture).
//!
//! The server validates policies against the schema before storing them
//! (`Policies::parse`: errors with line and column); the agent and any
//! service embedding this crate evaluate them locally (`Engine`; a service
//! follows its agent's set with `AgentPolicies` and builds requests for
//! its TLS or JWT peers with `Peer`). Cedar
//! denies by default: nothing is allowed that no policy permits.

pub mod agent;
mod engine;
mod location;
mod peer;
mod policies;
mod request;
pub mod schema;

pub use agent::AgentPolicies;
pub use engine::{Decision, Engine};
pub use peer::{Peer, PeerError};
pub use policies::{check_name, parse_source, Policies, PolicyError, PolicySource};
pub use request::{AuthzRequest, Principal, RequestError};
