//! One authorization question as the agent asks it of its policies: the
//! principal's facts from the entries this agent holds (selectors, hints),
//! `federated` from its trust domain, the time from the agent's clock.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use signet_authz::{AuthzRequest, Decision, Principal};
use signet_core::SpiffeId;
use tonic::Status;

use crate::cache::Snapshot;

/// What a caller asks, before the agent adds what it knows.
#[derive(Debug, Clone)]
pub struct Question {
    pub principal: SpiffeId,
    pub action: String,
    pub resource: String,
    pub source_address: Option<IpAddr>,
    pub svid_remaining: Option<Duration>,
    pub attributes: Map<String, Value>,
}

/// The principal with the selectors and hints of the entries this agent
/// holds for its SPIFFE ID (none for another trust domain's workload).
fn principal(snapshot: &Snapshot, id: SpiffeId) -> Principal {
    let mut p = Principal::new(id);
    for c in snapshot
        .entries
        .values()
        .filter(|c| c.entry.spiffe_id == p.spiffe_id)
    {
        p.selectors
            .extend(c.entry.selectors.iter().map(ToString::to_string));
        if !c.entry.hint.is_empty() {
            p.hints.push(c.entry.hint.clone());
        }
    }
    p.selectors.sort_unstable();
    p.selectors.dedup();
    p.hints.sort_unstable();
    p.hints.dedup();
    p
}

/// The agent's policies' answer to `q` at `now`; `InvalidArgument` names
/// what in the question is wrong (an unknown action, a context attribute
/// the schema does not have).
pub fn decide(snapshot: &Snapshot, q: Question, now: SystemTime) -> Result<Decision, Status> {
    let federated = !q.principal.is_member_of(&snapshot.trust_domain);
    let request = AuthzRequest {
        principal: principal(snapshot, q.principal),
        action: q.action,
        resource: q.resource,
        time: now,
        source_address: q.source_address,
        federated,
        svid_remaining: q.svid_remaining,
        attributes: q.attributes,
    };
    snapshot
        .policies
        .engine
        .decide(&request)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A JSON object of service-supplied context attributes ("" for none).
pub fn attributes(json: &str) -> Result<Map<String, Value>, Status> {
    if json.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Status::invalid_argument("context: not a JSON object")),
        Err(e) => Err(Status::invalid_argument(format!("context: {e}"))),
    }
}
