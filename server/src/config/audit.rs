//! `[audit]`: how often the audit chain is checkpointed, and the file
//! outside the datastore each checkpoint is also appended to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signet_core::duration::ConfigDuration;

use super::ConfigError;
use crate::audit::forward::{ForwardSettings, JsonFileSettings, SyslogTarget};

/// The file in the data dir when `checkpoint_file` names none.
pub const CHECKPOINT_FILE: &str = "audit_checkpoints.jsonl";
const EVERY: u64 = 1000;
const INTERVAL: Duration = Duration::from_secs(300);
const JSON_FILE_MAX_BYTES: u64 = 100 * 1024 * 1024;
const JSON_FILE_KEEP: u32 = 5;

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
    /// Forward this server's records to syslog (RFC 5424):
    /// `unix:/dev/log` or `udp:IP:PORT`.
    pub syslog: Option<String>,
    /// ... and/or append them to this JSON-lines file ...
    pub json_file: Option<PathBuf>,
    /// ... rotated past this size (100 MiB) ...
    pub json_file_max_bytes: Option<u64>,
    /// ... keeping this many rotated files (5).
    pub json_file_keep: Option<u32>,
    /// Records older than this are deleted, through a signed checkpoint
    /// (off unless set).
    pub retention: Option<ConfigDuration>,
}

/// `[audit]` with every value decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    pub checkpoint_file: PathBuf,
    pub forward: ForwardSettings,
    pub retention: Option<Duration>,
}

impl AuditConfig {
    pub fn settings(self, data_dir: &Path) -> Result<AuditSettings, ConfigError> {
        let syslog = self
            .syslog
            .map(|t| t.parse::<SyslogTarget>())
            .transpose()
            .map_err(|e| ConfigError::Audit("syslog", e))?;
        let max_bytes = self.json_file_max_bytes.unwrap_or(JSON_FILE_MAX_BYTES);
        if max_bytes == 0 {
            return Err(ConfigError::ZeroCount("audit.json_file_max_bytes"));
        }
        let retention = match self.retention.map(|c| c.0) {
            Some(d) if d.is_zero() => return Err(ConfigError::ZeroDuration("audit.retention")),
            other => other,
        };
        Ok(AuditSettings {
            forward: ForwardSettings {
                syslog,
                json_file: self.json_file.map(|path| JsonFileSettings {
                    path,
                    max_bytes,
                    keep: self.json_file_keep.unwrap_or(JSON_FILE_KEEP),
                }),
            },
            retention,
            checkpoint_every: self.checkpoint_every.unwrap_or(EVERY).max(1),
            checkpoint_interval: self
                .checkpoint_interval
                .map_or(INTERVAL, |d| d.0)
                .max(Duration::from_secs(1)),
            checkpoint_file: self
                .checkpoint_file
                .unwrap_or_else(|| data_dir.join(CHECKPOINT_FILE)),
        })
    }
}
