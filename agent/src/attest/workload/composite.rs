//! Runs the configured workload attestors side by side, each under a
//! timeout. One that fails or is slow is logged and counted and its
//! selectors are left out: fewer selectors can only match fewer entries, so
//! no caller gains an identity that way. What says the caller is not the
//! process it claims to be (pid reused, process gone) fails the whole
//! attestation: selectors must never mix two processes. Each attestor
//! guards its own reads; the composite also reads the start time before and
//! after all of them, so a pid reused between two attestors is caught too.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use signet_core::Selector;

use super::{AttestOptions, PeerInfo, WorkloadAttestError, WorkloadAttestor};
use crate::telemetry::Metrics;

pub struct CompositeAttestor {
    attestors: Vec<(&'static str, Arc<dyn WorkloadAttestor>)>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// procfs root for the start-time check around all attestors.
    procfs_root: Option<PathBuf>,
}

impl CompositeAttestor {
    pub fn new(
        attestors: Vec<(&'static str, Arc<dyn WorkloadAttestor>)>,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            attestors,
            timeout,
            metrics,
            procfs_root: None,
        }
    }

    /// Checks the caller's start time (under `procfs_root`) before and after
    /// all attestors.
    pub fn with_pid_guard(mut self, procfs_root: impl Into<PathBuf>) -> Self {
        self.procfs_root = Some(procfs_root.into());
        self
    }

    fn start_time(&self, peer: &PeerInfo) -> Result<Option<u64>, WorkloadAttestError> {
        match (&self.procfs_root, peer.pid) {
            (Some(root), Some(pid)) => {
                super::unix::start_time(&root.join(pid.to_string()), pid).map(Some)
            }
            _ => Ok(None),
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.attestors.iter().map(|(n, _)| *n).collect()
    }
}

#[async_trait]
impl WorkloadAttestor for CompositeAttestor {
    async fn attest(
        &self,
        peer: &PeerInfo,
        options: AttestOptions,
    ) -> Result<Vec<Selector>, WorkloadAttestError> {
        let started = self.start_time(peer)?;
        let peer_ref = peer;
        let runs = self.attestors.iter().map(|(name, attestor)| async move {
            let result = tokio::time::timeout(self.timeout, attestor.attest(peer_ref, options))
                .await
                .unwrap_or(Err(WorkloadAttestError::Timeout(self.timeout)));
            (*name, result)
        });
        let mut selectors = Vec::new();
        for (name, result) in futures::future::join_all(runs).await {
            match result {
                Ok(found) => selectors.extend(found),
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    self.metrics.attestor_failed(name);
                    tracing::error!(
                        attestor = name,
                        pid = ?peer.pid,
                        error = %e,
                        "workload attestor failed; continuing with the others' selectors"
                    );
                }
            }
        }
        if self.start_time(peer)? != started {
            return Err(WorkloadAttestError::PidReused(peer.pid.unwrap_or_default()));
        }
        selectors.sort_by_key(|s| s.to_string());
        selectors.dedup();
        Ok(selectors)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::attest::workload::test_procfs::{stat_line, ReusesPid};

    struct Fixed(Result<Vec<&'static str>, WorkloadAttestError>);

    #[async_trait]
    impl WorkloadAttestor for Fixed {
        async fn attest(
            &self,
            _: &PeerInfo,
            _: AttestOptions,
        ) -> Result<Vec<Selector>, WorkloadAttestError> {
            self.0
                .clone()
                .map(|v| v.iter().map(|s| Selector::parse(s).unwrap()).collect())
        }
    }

    struct Hangs;

    #[async_trait]
    impl WorkloadAttestor for Hangs {
        async fn attest(
            &self,
            _: &PeerInfo,
            _: AttestOptions,
        ) -> Result<Vec<Selector>, WorkloadAttestError> {
            std::future::pending().await
        }
    }

    fn peer() -> PeerInfo {
        PeerInfo {
            pid: Some(7),
            uid: 1000,
            gid: 1000,
        }
    }

    /// Captures what the composite logs.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn strings(s: &[Selector]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_failing_attestor_is_logged_and_the_others_selectors_kept() {
        let metrics = Arc::new(Metrics::new());
        let composite = CompositeAttestor::new(
            vec![
                ("unix", Arc::new(Fixed(Ok(vec!["unix:uid:1000"])))),
                (
                    "container",
                    Arc::new(Fixed(Err(WorkloadAttestError::Proc {
                        pid: 7,
                        message: "cgroup: permission denied".into(),
                    }))),
                ),
                (
                    "systemd",
                    Arc::new(Fixed(Ok(vec!["systemd:id:app.service"]))),
                ),
            ],
            Duration::from_secs(1),
            metrics.clone(),
        );
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let got = {
            let _guard = tracing::subscriber::set_default(subscriber);
            composite.attest(&peer(), AttestOptions::default()).await
        };
        assert_eq!(
            strings(&got.unwrap()),
            ["systemd:id:app.service", "unix:uid:1000"]
        );
        let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("ERROR"), "{logged}");
        assert!(logged.contains("attestor=\"container\""), "{logged}");
        assert!(logged.contains("cgroup: permission denied"), "{logged}");
        assert!(metrics
            .encode()
            .contains("signet_agent_workload_attestor_errors_total{attestor=\"container\"} 1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_attestor_times_out_without_holding_up_the_others() {
        let composite = CompositeAttestor::new(
            vec![
                ("unix", Arc::new(Fixed(Ok(vec!["unix:uid:1000"])))),
                ("systemd", Arc::new(Hangs)),
            ],
            Duration::from_secs(2),
            Arc::new(Metrics::new()),
        );
        let got = composite
            .attest(&peer(), AttestOptions::default())
            .await
            .unwrap();
        assert_eq!(strings(&got), ["unix:uid:1000"]);
    }

    #[tokio::test]
    async fn a_pid_reused_between_two_attestors_fails_the_whole_attestation() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("7").join("stat");
        std::fs::create_dir_all(stat.parent().unwrap()).unwrap();
        std::fs::write(&stat, stat_line(7, "app", 111)).unwrap();
        let composite = CompositeAttestor::new(
            vec![
                ("unix", Arc::new(Fixed(Ok(vec!["unix:uid:1000"])))),
                (
                    "systemd",
                    Arc::new(ReusesPid {
                        pid: 7,
                        stat: stat.clone(),
                        selector: "systemd:id:other.service",
                    }),
                ),
            ],
            Duration::from_secs(1),
            Arc::new(Metrics::new()),
        )
        .with_pid_guard(dir.path());
        assert_eq!(
            composite.attest(&peer(), AttestOptions::default()).await,
            Err(WorkloadAttestError::PidReused(7))
        );
        // Unchanged process: fine.
        let composite = CompositeAttestor::new(
            vec![("unix", Arc::new(Fixed(Ok(vec!["unix:uid:1000"]))))],
            Duration::from_secs(1),
            Arc::new(Metrics::new()),
        )
        .with_pid_guard(dir.path());
        assert!(composite
            .attest(&peer(), AttestOptions::default())
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_reused_pid_fails_the_whole_attestation() {
        for fatal in [
            WorkloadAttestError::PidReused(7),
            WorkloadAttestError::ProcessGone(7),
            WorkloadAttestError::NoPid,
        ] {
            let composite = CompositeAttestor::new(
                vec![
                    ("unix", Arc::new(Fixed(Err(fatal.clone())))),
                    (
                        "systemd",
                        Arc::new(Fixed(Ok(vec!["systemd:id:app.service"]))),
                    ),
                ],
                Duration::from_secs(1),
                Arc::new(Metrics::new()),
            );
            assert_eq!(
                composite.attest(&peer(), AttestOptions::default()).await,
                Err(fatal)
            );
        }
    }
}
