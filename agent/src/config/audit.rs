//! `[audit]`: the agent's own log of Workload API decisions.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigDuration;

/// `[audit]`: the agent's own log of Workload API decisions.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// How often the log's head is reported to the server (5m).
    pub checkpoint_interval: Option<ConfigDuration>,
}

pub const DEFAULT_AUDIT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);
