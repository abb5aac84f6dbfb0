//! Wiring. Order matters for restarts: the SVID cache a previous run left on
//! disk is loaded and published and the Workload API socket is serving it
//! before anything touches the network; then the node attests (or reuses its
//! stored SVID) and the agent SVID renewal, the sync stream and the cache
//! manager run side by side until told to stop. The socket and the health
//! file are removed on the way out.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use signet_core::{Clock, SystemClock};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::attest::node::{obtain_identity, NodeAttestError, Reattest, RenewLoop};
use crate::attest::workload::cache::{self, CachedAttestor};
use crate::attest::workload::composite::CompositeAttestor;
use crate::attest::workload::container::docker::DockerClient;
use crate::attest::workload::container::ContainerAttestor;
use crate::attest::workload::ptrace;
use crate::attest::workload::systemd::{
    BusAddress, SystemdAttestor, UnitBus, DEFAULT_DBUS_TIMEOUT,
};
use crate::attest::workload::unix::UnixAttestor;
use crate::attest::workload::WorkloadAttestor;
use crate::cache::{jwt, persist, CacheManager, JwtSvidCache, NodeMinter, NodeSigner};
use crate::config::{AttestorKind, RuntimeConfig};
use crate::health::{self, Health, Status};
use crate::node_client::{self, LateConnector, NodeConnector};
use crate::storage::Storage;
use crate::sync::SyncTask;
use crate::telemetry::{self, Metrics, Readiness};
use crate::workload_api::{self, WorkloadApi};

/// Runs the agent until `shutdown` completes or a part fails for good.
pub async fn run(config: RuntimeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let serve_settings = serve_settings(&config);
    let storage = Storage::open(&config.data_dir)?;
    let health = Health::new(config.max_clock_skew);
    let health_file = health::health_path(&config.socket_path);
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::new(health.clone(), clock.clone());

    let restored = match persist::load(&config.data_dir, &config.trust_domain) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the cached SVIDs; starting empty");
            None
        }
    };
    let restored_revision = restored.as_ref().map_or(0, |r| r.revision);
    let connector = LateConnector::default();
    let (updates_tx, updates_rx) = mpsc::channel(64);
    let (manager, cache_rx) = CacheManager::new(
        config.trust_domain.clone(),
        Arc::new(NodeSigner {
            connector: connector.clone(),
        }),
        clock.clone(),
        signet_core::rotation::random_jitter,
        updates_rx,
    );
    let mut manager = manager.with_prefetch(config.svid_prefetch);
    if let Some(restored) = restored {
        let entries = restored.entries.len();
        manager.restore(restored);
        tracing::info!(
            entries,
            revision = restored_revision,
            "serving the SVIDs cached on disk"
        );
    }
    let jwt_svids = Arc::new(JwtSvidCache::new(
        Arc::new(NodeMinter {
            connector: connector.clone(),
        }),
        clock.clone(),
    ));

    let mut tasks = JoinSet::new();
    if let Some(addr) = config.telemetry_bind {
        let endpoint = signet_runtime::probes::Endpoint::bind(addr)
            .await
            .with_context(|| format!("cannot bind the telemetry address {addr}"))?;
        tracing::info!(addr = %endpoint.local_addr(), "serving /live, /ready and /metrics");
        let probes = Arc::new(telemetry::AgentProbes {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
        });
        // Live until the process ends: the task set is dropped on the way out.
        tasks.spawn(endpoint.serve(probes, std::future::pending()));
    }
    let listener = workload_api::bind(&config.socket_path)?;
    tracing::info!(socket = %config.socket_path.display(), "Workload API listening");
    let attestor = workload_attestor(&config, metrics.clone());
    let (drain_tx, drain_rx) = watch::channel(false);
    let audit_log = {
        let dir = config.data_dir.clone();
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || crate::audit::AuditLog::open(&dir, metrics))
            .await?
            .context("opening the workload audit log")?
    };
    let api = WorkloadApi::new(
        cache_rx.clone(),
        attestor,
        clock.clone(),
        jwt_svids.clone(),
        config.jwt_leeway,
    )
    .with_telemetry(metrics.clone(), drain_rx)
    .with_rate_limit(config.workload_api.rate_limit)
    .with_audit(audit_log.clone())
    .with_sds(config.sds.clone())
    .with_authz(config.authz.clone());
    // Streams never finish on their own: on shutdown they are ended with
    // Unavailable (drain) and then the server is dropped.
    tasks.spawn(async move {
        if let Err(e) =
            workload_api::serve(listener, api, serve_settings, std::future::pending()).await
        {
            tracing::error!(error = %e, "Workload API stopped");
        }
    });
    tasks.spawn(telemetry::svids::follow(
        metrics.clone(),
        cache_rx.clone(),
        clock.clone(),
    ));
    tasks.spawn(health::write_loop(health_file.clone(), health.subscribe()));
    tasks.spawn(persist::persist_loop(
        config.data_dir.clone(),
        cache_rx.clone(),
    ));
    tasks.spawn(jwt::follow_snapshots(cache_rx.clone(), jwt_svids));
    ptrace::warn_if_missing();

    tokio::pin!(shutdown);
    let attested = tokio::select! {
        a = obtain_identity(&config, &storage, clock.as_ref()) => a,
        _ = &mut shutdown => {
            drain(&config.socket_path, &drain_tx, &metrics).await;
            audit_log.close().await;
            tasks.abort_all();
            cleanup(&config.socket_path, &health_file);
            return Ok(());
        }
    };
    // Issuing needs an identity, so the manager runs only once there is
    // one; until then it is held (its watch keeps the published cache, and
    // the streams withdraw SVIDs as they expire).
    let mut idle_manager = Some(manager);
    match attested {
        Ok(attested) => {
            tracing::info!(spiffe_id = %attested.svid.x509.spiffe_id, "agent identity ready");
            // Only now: `systemctl start` returns once the agent can issue.
            let serving = format!(
                "serving the Workload API as {}",
                attested.svid.x509.spiffe_id
            );
            signet_runtime::systemd::ready(&serving);
            tasks.spawn(report_health(health.subscribe(), serving));
            if attested.fresh {
                health.mark_reached_server();
            }
            let (bundle_tx, bundle_rx) = watch::channel(Arc::new(attested.bundle));
            let (svid_tx, svid_rx) = watch::channel(Arc::new(attested.svid));
            readiness.set_agent_svid(svid_rx.clone());
            let node = Arc::new(
                NodeConnector::new(
                    config.server_address.clone(),
                    node_client::server_id(&config.trust_domain)?,
                    bundle_rx.clone(),
                    svid_rx,
                )
                .with_health(health.clone()),
            );
            connector.set(node.clone());
            tasks.spawn(crate::audit::report::run(
                audit_log.clone(),
                node.clone(),
                config.audit_checkpoint_interval,
                clock.clone(),
            ));
            let (tainted_tx, tainted_rx) = watch::channel(BTreeSet::new());
            tasks.spawn(
                RenewLoop {
                    connector: node.clone(),
                    storage: storage.clone(),
                    bundle: bundle_rx,
                    svid_tx,
                    tainted: tainted_rx,
                    health: health.clone(),
                    clock: clock.clone(),
                    prefetch: config.svid_prefetch,
                    reattest: Reattest::new(config.clone(), storage.clone()),
                }
                .run(),
            );
            tasks.spawn(
                SyncTask {
                    connector: node,
                    updates: updates_tx,
                    bundle: bundle_tx,
                    tainted_x509: tainted_tx,
                    storage,
                    health: health.clone(),
                    clock,
                    start_revision: if attested.fresh { 0 } else { restored_revision },
                }
                .run(),
            );
            if let Some(manager) = idle_manager.take() {
                tasks.spawn(manager.run());
            }
        }
        Err(e @ NodeAttestError::NoToken(_)) if serves_cached(&cache_rx, clock.as_ref()) => {
            // Keep serving what is cached (until it expires) and say why
            // nothing new will come.
            tracing::error!("{e}");
            signet_runtime::systemd::ready(&format!("serving cached SVIDs only: {e}"));
            health.set_status(Status::AgentSvidExpired, e.to_string());
        }
        Err(e) => {
            signet_runtime::systemd::stopping();
            audit_log.close().await;
            tasks.abort_all();
            cleanup(&config.socket_path, &health_file);
            return Err(e).context("node attestation failed");
        }
    }

    let result = tokio::select! {
        _ = &mut shutdown => {
            tracing::info!("shutting down");
            Ok(())
        }
        Some(done) = tasks.join_next() => {
            Err(anyhow::anyhow!("an agent task stopped unexpectedly: {done:?}"))
        }
    };
    drop(idle_manager);
    drain(&config.socket_path, &drain_tx, &metrics).await;
    audit_log.close().await;
    tasks.abort_all();
    cleanup(&config.socket_path, &health_file);
    result
}

/// Stops taking connections (the socket goes first), ends every open stream
/// with Unavailable and gives them a moment to reach their clients.
async fn drain(socket: &std::path::Path, drain_tx: &watch::Sender<bool>, metrics: &Metrics) {
    signet_runtime::systemd::stopping();
    if let Err(e) = std::fs::remove_file(socket) {
        tracing::debug!(path = %socket.display(), error = %e, "already gone");
    }
    let open = metrics.connected_workloads.get();
    tracing::info!(streams = open, "draining Workload API streams");
    drain_tx.send_replace(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, metrics.streams_closed())
        .await
        .is_err()
    {
        let left = metrics.connected_workloads.get();
        tracing::warn!(
            streams = left,
            "Workload API streams still open after the drain timeout"
        );
    }
    // The last answers are written by the connection tasks.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Some SVID restored from disk is still valid: a workload can be served.
fn serves_cached(cache: &watch::Receiver<Arc<crate::cache::Snapshot>>, clock: &dyn Clock) -> bool {
    let now = clock.now();
    cache
        .borrow()
        .entries
        .values()
        .any(|c| c.svid.as_ref().is_some_and(|s| s.is_valid_at(now)))
}

/// Keeps systemd's status line (`systemctl status`) saying what the health
/// file says: banned, evicted, an agent SVID that expired, clock skew; back
/// to `serving` once healthy again.
async fn report_health(mut health: watch::Receiver<health::HealthReport>, serving: String) {
    let mut shown = None;
    loop {
        let problem = health.borrow_and_update().problem();
        if problem != shown {
            match &problem {
                Some(p) => signet_runtime::systemd::status(&format!("unhealthy: {p}")),
                None if shown.is_some() => signet_runtime::systemd::status(&serving),
                None => {}
            }
            shown = problem;
        }
        if health.changed().await.is_err() {
            return;
        }
    }
}

/// How many descriptors a Workload API connection takes: its socket and
/// the caller's pidfd.
const FDS_PER_CONNECTION: u64 = 2;
/// Descriptors kept free of connections: files, D-Bus, the Node API, logs.
const FDS_RESERVED: u64 = 256;

/// The Workload API's connection settings, the total capped to what the
/// open-file limit (raised to its hard limit first) can take.
fn serve_settings(config: &RuntimeConfig) -> workload_api::ServeSettings {
    let mut limits = config.workload_api;
    limits.max_connections = signet_runtime::rlimit::raise_and_fit(
        limits.max_connections,
        FDS_PER_CONNECTION,
        FDS_RESERVED,
        "Workload API",
    );
    workload_api::ServeSettings {
        procfs_root: config.procfs_root.clone(),
        limits,
    }
}

/// The configured workload attestors, composed with their timeout, their
/// answers reused briefly per process.
fn workload_attestor(config: &RuntimeConfig, metrics: Arc<Metrics>) -> Arc<dyn WorkloadAttestor> {
    let mut attestors: Vec<(&'static str, Arc<dyn WorkloadAttestor>)> = Vec::new();
    for kind in &config.workload_attestors {
        match kind {
            AttestorKind::Unix => attestors.push((
                "unix",
                Arc::new(UnixAttestor::new(
                    config.procfs_root.clone(),
                    config.hash_size_limit,
                )),
            )),
            AttestorKind::Container => {
                let mut container = ContainerAttestor::new(config.procfs_root.clone());
                if let Some(docker) = &config.docker {
                    container = container.with_docker(
                        DockerClient::new(docker.socket_path.clone(), docker.timeout),
                        docker.env_allow.clone(),
                    );
                }
                attestors.push(("container", Arc::new(container)));
            }
            AttestorKind::Systemd => {
                let bus = UnitBus::new(
                    BusAddress::System,
                    DEFAULT_DBUS_TIMEOUT.min(config.attestor_timeout),
                );
                attestors.push((
                    "systemd",
                    Arc::new(SystemdAttestor::new(config.procfs_root.clone(), bus)),
                ));
            }
        }
    }
    let composite = CompositeAttestor::new(attestors, config.attestor_timeout, metrics)
        .with_pid_guard(config.procfs_root.clone());
    tracing::info!(attestors = ?composite.names(), docker_api = config.docker.is_some(), "workload attestors");
    Arc::new(CachedAttestor::new(
        Arc::new(composite),
        config.procfs_root.clone(),
        cache::DEFAULT_TTL,
    ))
}

/// How long open streams get to end on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

fn cleanup(socket: &std::path::Path, health_file: &std::path::Path) {
    for path in [socket, health_file] {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::debug!(path = %path.display(), error = %e, "already gone");
        }
    }
}
