//! `[audit]`: how often the audit chain is checkpointed, and the file
//! outside the datastore each checkpoint is also appended to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signet_core::duration::ConfigDuration;

/// The file in the data dir when `checkpoint_file` names none.
pub const CHECKPOINT_FILE: &str = "audit_checkpoints.jsonl";
const EVERY: u64 = 1000;
const INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// A checkpoint once this many records came since the last (1000).
    pub checkpoint_every: Option<u64>,
    /// ... or once this long passed since it, if any record came (5m).
    pub checkpoint_interval: Option<ConfigDuration>,
    /// JSON lines, one checkpoint each (the data dir's
    /// `audit_checkpoints.jsonl`); keep a copy where the datastore's
    /// writers cannot reach.
    pub checkpoint_file: Option<PathBuf>,
}

/// `[audit]` with every value decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    pub checkpoint_file: PathBuf,
}

impl AuditConfig {
    pub fn settings(self, data_dir: &Path) -> AuditSettings {
        AuditSettings {
            checkpoint_every: self.checkpoint_every.unwrap_or(EVERY).max(1),
            checkpoint_interval: self
                .checkpoint_interval
                .map_or(INTERVAL, |d| d.0)
                .max(Duration::from_secs(1)),
            checkpoint_file: self
                .checkpoint_file
                .unwrap_or_else(|| data_dir.join(CHECKPOINT_FILE)),
        }
    }
}
