//! Wiring. Order matters for restarts: the SVID cache a previous run left on
//! disk is loaded and published and the Workload API socket is serving it
//! before anything touches the network; then the node attests (or reuses its
//! stored SVID) and the agent SVID renewal, the sync stream and the cache
//! manager run side by side until told to stop. The socket and the health
//! file are removed on the way out.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use signet_core::{Clock, SystemClock};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::attest::node::{obtain_identity, NodeAttestError, RenewLoop};
use crate::attest::workload::unix::UnixAttestor;
use crate::cache::{jwt, persist, CacheManager, JwtSvidCache, NodeMinter, NodeSigner};
use crate::config::RuntimeConfig;
use crate::health::{self, Health, Status};
use crate::node_client::{self, LateConnector, NodeConnector};
use crate::storage::Storage;
use crate::sync::SyncTask;
use crate::workload_api::{self, WorkloadApi};

/// Runs the agent until `shutdown` completes or a part fails for good.
pub async fn run(config: RuntimeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let storage = Storage::open(&config.data_dir)?;
    let health = Health::new(config.max_clock_skew);
    let health_file = health::health_path(&config.socket_path);

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
    let (mut manager, cache_rx) = CacheManager::new(
        config.trust_domain.clone(),
        Arc::new(NodeSigner {
            connector: connector.clone(),
        }),
        clock.clone(),
        signet_core::rotation::random_jitter,
        updates_rx,
    );
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
    let listener = workload_api::bind(&config.socket_path)?;
    tracing::info!(socket = %config.socket_path.display(), "Workload API listening");
    let attestor = Arc::new(UnixAttestor::new(
        config.procfs_root.clone(),
        config.hash_size_limit,
    ));
    let api = WorkloadApi::new(
        cache_rx.clone(),
        attestor,
        clock.clone(),
        jwt_svids.clone(),
        config.jwt_leeway,
    );
    // Streams never finish on their own, so the server is dropped rather
    // than drained on shutdown.
    tasks.spawn(async move {
        if let Err(e) = workload_api::serve(listener, api, std::future::pending()).await {
            tracing::error!(error = %e, "Workload API stopped");
        }
    });
    tasks.spawn(health::write_loop(health_file.clone(), health.subscribe()));
    tasks.spawn(persist::persist_loop(
        config.data_dir.clone(),
        cache_rx.clone(),
    ));
    tasks.spawn(jwt::follow_snapshots(cache_rx, jwt_svids));

    tokio::pin!(shutdown);
    let attested = tokio::select! {
        a = obtain_identity(&config, &storage, clock.as_ref()) => a,
        _ = &mut shutdown => {
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
            tracing::info!(spiffe_id = %attested.svid.spiffe_id, "agent identity ready");
            let (bundle_tx, bundle_rx) = watch::channel(Arc::new(attested.bundle));
            let (svid_tx, svid_rx) = watch::channel(Arc::new(attested.svid));
            let node = Arc::new(NodeConnector::new(
                config.server_address.clone(),
                node_client::server_id(&config.trust_domain)?,
                bundle_rx.clone(),
                svid_rx,
            ));
            connector.set(node.clone());
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
        Err(e @ NodeAttestError::NoToken(_)) => {
            // Keep serving what is cached (until it expires) and say why
            // nothing new will come.
            tracing::error!("{e}");
            health.set_status(Status::AgentSvidExpired, e.to_string());
        }
        Err(e) => {
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
    tasks.abort_all();
    cleanup(&config.socket_path, &health_file);
    result
}

fn cleanup(socket: &std::path::Path, health_file: &std::path::Path) {
    for path in [socket, health_file] {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::debug!(path = %path.display(), error = %e, "already gone");
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logs to stderr; RUST_LOG sets the level (default info).
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
