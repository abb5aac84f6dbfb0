//! One Workload API decision, canonically encoded (compact JSON, fields in
//! this order).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Refused { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRecord {
    pub time_ms: i64,
    /// `fetch_x509_svid`, `fetch_jwt_svid` or `validate_jwt_svid`.
    pub call: String,
    pub pid: Option<i32>,
    pub uid: u32,
    pub gid: u32,
    /// The caller's selectors (empty when it was not attested).
    pub selectors: Vec<String>,
    /// The SPIFFE IDs served (for a validation: the token's subject).
    pub served: Vec<String>,
    pub outcome: Outcome,
}

impl WorkloadRecord {
    pub fn canonical(&self) -> String {
        // Strings, numbers and lists: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
