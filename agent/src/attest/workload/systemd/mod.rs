//! The `systemd` workload attestor: `systemd:id:<unit>` from the caller's
//! cgroup path (the deepest `.service` or `.scope`, as systemd's own
//! GetUnitByPID answers), and `systemd:fragment_path:<path>` from the
//! system D-Bus when it is reachable. A bus that is absent or slow costs
//! only the fragment path (logged); the cgroup selector still holds.

mod dbus;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use signet_core::Selector;

use super::{cgroup, AttestOptions, PeerInfo, WorkloadAttestError, WorkloadAttestor};
pub use dbus::{BusAddress, UnitBus};

/// How long the D-Bus lookup may take by default.
pub const DEFAULT_DBUS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct SystemdAttestor {
    procfs_root: PathBuf,
    bus: UnitBus,
}

impl SystemdAttestor {
    pub fn new(procfs_root: impl Into<PathBuf>, bus: UnitBus) -> Self {
        Self {
            procfs_root: procfs_root.into(),
            bus,
        }
    }

    /// The unit from the cgroup file (blocking: reads procfs).
    pub fn unit_of(&self, pid: i32) -> Result<Option<String>, WorkloadAttestError> {
        let text = cgroup::read_for_pid(&self.procfs_root, pid)?;
        Ok(unit_from_cgroup(&text))
    }
}

/// The systemd hierarchy's line (v1 `name=systemd`, else the v2 `0::`
/// line), and in it the deepest service or scope.
pub fn unit_from_cgroup(text: &str) -> Option<String> {
    let lines = cgroup::parse(text);
    let line = lines
        .iter()
        .find(|l| l.controllers == "name=systemd")
        .or_else(|| {
            lines
                .iter()
                .find(|l| l.hierarchy == "0" && l.controllers.is_empty())
        })?;
    let unit = line
        .segments()
        .rev()
        .find(|s| is_unit(s))
        .map(str::to_owned);
    unit
}

fn is_unit(segment: &str) -> bool {
    [".service", ".scope"].iter().any(|suffix| {
        segment
            .strip_suffix(suffix)
            .is_some_and(|name| !name.is_empty())
    })
}

#[async_trait]
impl WorkloadAttestor for SystemdAttestor {
    async fn attest(
        &self,
        peer: &PeerInfo,
        _options: AttestOptions,
    ) -> Result<Vec<Selector>, WorkloadAttestError> {
        let pid = peer.pid.ok_or(WorkloadAttestError::NoPid)?;
        let this = self.clone();
        let unit = tokio::task::spawn_blocking(move || this.unit_of(pid))
            .await
            .map_err(|e| WorkloadAttestError::Task(e.to_string()))??;
        let Some(unit) = unit else {
            return Ok(Vec::new());
        };
        let mut values = vec![format!("id:{unit}")];
        match self.bus.fragment_path(&unit).await {
            Ok(Some(path)) => values.push(format!("fragment_path:{path}")),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                pid,
                unit = %unit,
                error = %e,
                "systemd D-Bus lookup failed; no systemd:fragment_path selector"
            ),
        }
        Ok(values
            .iter()
            .filter_map(|v| Selector::new("systemd", v).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests;
