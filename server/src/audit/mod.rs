//! The audit log: every security decision appends one typed record to a
//! hash-chained log in the datastore (one chain for every server of a
//! group), so that who got which credential, and when, can be proven later
//! and any edit, removal, insertion or reordering is found by
//! `signet-server audit verify`.

/// The chain rule, shared with the agent's own log.
pub use signet_core::audit_chain as chain;
pub mod checkpoint;
pub mod forward;
pub mod record;
pub mod retention;
pub mod transitions;
mod writer;

pub use chain::{Break, StoredRecord, Verifier};
pub use record::{AuditRecord, Decision, Outcome};
pub use writer::Auditor;

use serde::{Deserialize, Serialize};
use serde_json::json;

/// One record as a JSON line (`audit tail`, the forwarders): its fields,
/// then `seq` and `hash`.
pub fn json_line(r: &StoredRecord) -> String {
    let mut v = serde_json::from_str::<serde_json::Value>(&r.record)
        .unwrap_or_else(|_| json!({ "unparsed": r.record }));
    if let Some(o) = v.as_object_mut() {
        o.insert("seq".into(), json!(r.seq));
        o.insert("hash".into(), json!(r.hash));
    }
    v.to_string()
}

/// `(seq, hash)` of the chain at one moment, signed by a server's audit
/// key; kept in the datastore and, line by line, outside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    /// Lowercase hex, as the chain stores it.
    pub hash: String,
    pub time_ms: i64,
    pub server_id: String,
    /// Lowercase hex SHA-256 of the public key.
    pub key_id: String,
    /// Base64 of the raw Ed25519 public key.
    pub public_key: String,
    /// Base64 of the signature over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// What the audit key signs.
    pub fn message(seq: u64, hash: &str, time_ms: i64, server_id: &str) -> Vec<u8> {
        format!("signet-audit-checkpoint/v1\n{seq}\n{hash}\n{time_ms}\n{server_id}").into_bytes()
    }
}
