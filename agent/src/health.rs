//! What `signet-agent healthcheck` can't learn from the Workload API: the
//! agent was banned or evicted, its own SVID expired, or the server's clock
//! is far off. Kept in a watch channel and mirrored to a small JSON file
//! next to the Workload API socket (`<socket>.health`), which the
//! healthcheck reads after the socket has answered.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::storage::write_atomic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Healthy,
    /// The server banned this agent: it serves nothing and will not retry.
    Banned,
    /// The server removed this agent's record: a new join token is needed.
    Evicted,
    /// The agent SVID expired and the agent cannot re-attest on its own.
    AgentSvidExpired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub status: Status,
    /// What happened and what to do; empty when healthy.
    pub message: String,
    /// Server clock minus agent clock at the last sync message, in ms.
    pub clock_skew_ms: Option<i64>,
    pub max_clock_skew_ms: u64,
    /// The server the agent talks to (of an HA group, the one it last
    /// moved to); absent until it first connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl HealthReport {
    fn healthy(max_clock_skew: Duration) -> Self {
        Self {
            status: Status::Healthy,
            message: String::new(),
            clock_skew_ms: None,
            max_clock_skew_ms: millis(max_clock_skew),
            server: None,
        }
    }

    /// `None` when healthy, else the one-line reason for the healthcheck.
    pub fn problem(&self) -> Option<String> {
        if self.status != Status::Healthy {
            return Some(self.message.clone());
        }
        let skew = self.clock_skew_ms?;
        (skew.unsigned_abs() > self.max_clock_skew_ms)
            .then(|| skew_message(skew, self.max_clock_skew_ms))
    }

    /// Banned or evicted: nothing more to do with this identity.
    pub fn is_cut_off(&self) -> bool {
        matches!(self.status, Status::Banned | Status::Evicted)
    }
}

pub fn skew_message(skew_ms: i64, max_ms: u64) -> String {
    let direction = if skew_ms > 0 { "ahead of" } else { "behind" };
    format!(
        "the server's clock is {:.3}s {direction} the agent's (max_clock_skew {:.3}s): check NTP on both hosts",
        skew_ms.unsigned_abs() as f64 / 1000.0,
        max_ms as f64 / 1000.0
    )
}

/// Server time minus local time, in ms; `None` when the server sent none.
pub fn measure_skew(server_time_ms: i64, local: SystemTime) -> Option<i64> {
    if server_time_ms <= 0 {
        return None;
    }
    let local_ms = match local.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    };
    Some(server_time_ms.saturating_sub(local_ms))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Shared handle: every part of the agent reports here.
#[derive(Clone)]
pub struct Health {
    tx: watch::Sender<HealthReport>,
    /// Some answer came from the server (for `/ready`).
    reached_server: Arc<AtomicBool>,
}

impl Health {
    pub fn new(max_clock_skew: Duration) -> Self {
        Self {
            tx: watch::channel(HealthReport::healthy(max_clock_skew)).0,
            reached_server: Arc::default(),
        }
    }

    pub fn mark_reached_server(&self) {
        self.reached_server.store(true, Ordering::Relaxed);
    }

    pub fn reached_server(&self) -> bool {
        self.reached_server.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> HealthReport {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<HealthReport> {
        self.tx.subscribe()
    }

    /// A terminal problem (banned, evicted, agent SVID expired).
    pub fn set_status(&self, status: Status, message: impl Into<String>) {
        let message = message.into();
        self.tx.send_if_modified(|r| {
            let changed = r.status != status || r.message != message;
            r.status = status;
            r.message = message;
            changed
        });
    }

    /// The server the agent is connected to now.
    pub fn set_server(&self, server: String) {
        self.tx.send_if_modified(|r| {
            let changed = r.server.as_deref() != Some(server.as_str());
            r.server = Some(server);
            changed
        });
    }

    /// Records the skew measured on a sync message; warns when it crosses
    /// the threshold and says so when it comes back.
    pub fn record_skew(&self, skew_ms: i64) {
        self.tx.send_if_modified(|r| {
            let max = r.max_clock_skew_ms;
            let over = |s: Option<i64>| s.is_some_and(|s| s.unsigned_abs() > max);
            let was_over = over(r.clock_skew_ms);
            let is_over = over(Some(skew_ms));
            if is_over && !was_over {
                tracing::warn!(
                    skew_ms,
                    max_clock_skew_ms = max,
                    "{}",
                    skew_message(skew_ms, max)
                );
            } else if was_over && !is_over {
                tracing::info!(skew_ms, "server clock back within max_clock_skew");
            }
            // Rewrite the file only when the verdict or the second changes.
            let changed =
                was_over != is_over || r.clock_skew_ms.map(|s| s / 1000) != Some(skew_ms / 1000);
            r.clock_skew_ms = Some(skew_ms);
            changed
        });
    }
}

/// The health file for the agent serving `socket_path`.
pub fn health_path(socket_path: &Path) -> PathBuf {
    let mut name = socket_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".health");
    socket_path.with_file_name(name)
}

/// Mirrors every change to the health file (world-readable: no secrets).
pub async fn write_loop(path: PathBuf, mut rx: watch::Receiver<HealthReport>) {
    loop {
        let report = rx.borrow_and_update().clone();
        match serde_json::to_vec_pretty(&report) {
            Ok(doc) => {
                let target = path.clone();
                let written =
                    tokio::task::spawn_blocking(move || write_atomic(&target, &doc, 0o644)).await;
                if !matches!(written, Ok(Ok(()))) {
                    tracing::warn!(path = %path.display(), "cannot write the health file");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode the health report"),
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Reads a health file; `None` if there is none.
pub fn read(path: &Path) -> Result<Option<HealthReport>, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn skew_is_server_minus_agent() {
        assert_eq!(
            measure_skew(1_000_045_000, at_ms(1_000_000_000)),
            Some(45_000)
        );
        assert_eq!(
            measure_skew(1_000_000_000, at_ms(1_000_002_500)),
            Some(-2_500)
        );
        assert_eq!(measure_skew(0, at_ms(5)), None, "old servers send no time");
    }

    #[test]
    fn skew_beyond_the_threshold_makes_the_agent_unhealthy() {
        let health = Health::new(Duration::from_secs(30));
        health.record_skew(29_000);
        assert_eq!(health.report().problem(), None);
        health.record_skew(-45_200);
        let problem = health.report().problem().unwrap();
        assert!(problem.contains("45.200s behind"), "{problem}");
        assert!(problem.contains("max_clock_skew 30.000s"), "{problem}");
        health.record_skew(100);
        assert_eq!(health.report().problem(), None, "recovers");
    }

    #[test]
    fn banned_is_reported_with_its_message_and_survives_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let path = health_path(&socket);
        assert_eq!(path, dir.path().join("api.sock.health"));
        let health = Health::new(Duration::from_secs(30));
        health.set_status(Status::Banned, "agent is banned");
        let doc = serde_json::to_vec(&health.report()).unwrap();
        std::fs::write(&path, doc).unwrap();
        let back = read(&path).unwrap().unwrap();
        assert!(back.is_cut_off());
        assert_eq!(back.problem().as_deref(), Some("agent is banned"));
        assert!(read(&dir.path().join("none")).unwrap().is_none());
    }
}
