//! What the peer tells the test: JSON files written whole (temp + rename),
//! so a test polling for one never reads half of it.

use std::path::Path;

use serde_json::{json, Value};

pub fn write(path: &Path, value: &Value) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, value.to_string()).expect("write report");
    std::fs::rename(&tmp, path).expect("rename report");
}

/// A Workload API call's outcome: the SPIFFE IDs served, or the status.
pub fn outcome(result: Result<Vec<String>, tonic::Status>) -> Value {
    match result {
        Ok(ids) => json!({"ok": true, "spiffe_ids": ids}),
        Err(s) => json!({
            "ok": false,
            "code": format!("{:?}", s.code()),
            "message": s.message(),
        }),
    }
}

/// Polls until `path` exists (a test's or a process's go-ahead). Blocking
/// on purpose: it runs before exec, where this process has no runtime.
#[allow(clippy::disallowed_methods)]
pub fn wait_for_file(path: &Path, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}
