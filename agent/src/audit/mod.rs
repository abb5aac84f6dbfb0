//! The agent's own audit log: one hash-chained record per Workload API
//! decision (who asked, as pid, uid and selectors; which SPIFFE IDs were
//! served, or why not) in `workload_audit.jsonl` in the data dir, with the
//! server's chain rule (`hash_n = SHA-256(hash_{n-1} ‖ record_n)`). Its
//! head is reported to the server, which records it in its own chain, so
//! a host's log can be checked centrally: `signet-agent audit verify
//! --checkpoints FILE` with what `signet-server audit show --kind
//! agent_audit_checkpoint --agent ID --output json` printed.

pub mod log;
mod record;
pub mod report;
pub mod verify;

pub use log::{log_path, AuditLog, Head, LOG_FILE};
pub use record::{Outcome, WorkloadRecord};
