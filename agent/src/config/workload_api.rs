//! `[workload_api]`: how many connections callers may hold open, for how
//! long, and how many calls a uid may make.

use serde::Deserialize;
use signet_runtime::ratelimit::Rate;

use super::{
    bounded, ConfigDuration, ConfigError, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_UID,
    MAX_FIRST_REQUEST_TIMEOUT, MAX_IDLE_TIMEOUT,
};

/// `[workload_api]`: what callers may hold open.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadApiSection {
    pub max_connections_per_uid: Option<usize>,
    pub max_connections: Option<usize>,
    pub first_request_timeout: Option<ConfigDuration>,
    pub idle_timeout: Option<ConfigDuration>,
    /// Calls per caller uid: `{ per_second = 2000, burst = 10000 }`.
    pub rate_limit: Option<signet_runtime::ratelimit::RateConfig>,
}

/// Calls one uid may make: far above what a workload needs (it holds a
/// stream), low enough that one flooding uid leaves the CPU to the others.
pub const DEFAULT_RATE_LIMIT: Rate = Rate {
    per_second: 2000.0,
    burst: 10_000,
};

/// Connection bounds of the Workload API, decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkloadApiLimits {
    pub max_connections_per_uid: usize,
    pub max_connections: usize,
    pub timeouts: signet_runtime::conn::Timeouts,
    /// Calls per caller uid.
    pub rate_limit: Rate,
}

impl Default for WorkloadApiLimits {
    fn default() -> Self {
        Self {
            max_connections_per_uid: DEFAULT_MAX_CONNECTIONS_PER_UID,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            timeouts: signet_runtime::conn::Timeouts::default(),
            rate_limit: DEFAULT_RATE_LIMIT,
        }
    }
}

impl WorkloadApiSection {
    pub(super) fn limits(self) -> Result<WorkloadApiLimits, ConfigError> {
        let d = WorkloadApiLimits::default();
        let count = |v: Option<usize>, default: usize, name: &'static str| match v {
            Some(0) => Err(ConfigError::Duration(name, "must be at least 1".into())),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let rate_limit = match self.rate_limit {
            None => d.rate_limit,
            Some(c) => c
                .rate()
                .map_err(|e| ConfigError::Duration("workload_api.rate_limit", e))?,
        };
        Ok(WorkloadApiLimits {
            rate_limit,
            max_connections_per_uid: count(
                self.max_connections_per_uid,
                d.max_connections_per_uid,
                "workload_api.max_connections_per_uid",
            )?,
            max_connections: count(
                self.max_connections,
                d.max_connections,
                "workload_api.max_connections",
            )?,
            timeouts: signet_runtime::conn::Timeouts {
                first_request: bounded(
                    "workload_api.first_request_timeout",
                    self.first_request_timeout.map(|c| c.0),
                    d.timeouts.first_request,
                    MAX_FIRST_REQUEST_TIMEOUT,
                )?,
                idle: bounded(
                    "workload_api.idle_timeout",
                    self.idle_timeout.map(|c| c.0),
                    d.timeouts.idle,
                    MAX_IDLE_TIMEOUT,
                )?,
            },
        })
    }
}
