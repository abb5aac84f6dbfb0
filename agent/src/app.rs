//! Wiring: attest the node, then run the agent SVID renewal, the sync
//! stream, the cache manager and the Workload API side by side until told
//! to stop; the socket is removed on the way out.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use signet_core::{Clock, SystemClock};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::attest::node::{obtain_identity, renew_loop};
use crate::attest::workload::unix::UnixAttestor;
use crate::cache::{CacheManager, JwtSvidCache, NodeMinter, NodeSigner};
use crate::config::RuntimeConfig;
use crate::node_client::{self, NodeConnector};
use crate::storage::Storage;
use crate::sync::SyncTask;
use crate::workload_api::{self, WorkloadApi};

/// Runs the agent until `shutdown` completes or a part fails for good.
pub async fn run(config: RuntimeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let storage = Storage::open(&config.data_dir)?;
    let attested = obtain_identity(&config, &storage, clock.as_ref()).await?;
    tracing::info!(spiffe_id = %attested.svid.spiffe_id, "agent identity ready");

    let (bundle_tx, bundle_rx) = watch::channel(Arc::new(attested.bundle));
    let (svid_tx, svid_rx) = watch::channel(Arc::new(attested.svid));
    let connector = Arc::new(NodeConnector::new(
        config.server_address.clone(),
        node_client::server_id(&config.trust_domain)?,
        bundle_rx.clone(),
        svid_rx,
    ));
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

    let jwt_svids = Arc::new(JwtSvidCache::new(
        Arc::new(NodeMinter {
            connector: connector.clone(),
        }),
        clock.clone(),
    ));

    let mut tasks = JoinSet::new();
    tasks.spawn(renew_loop(
        connector.clone(),
        storage.clone(),
        bundle_rx,
        svid_tx,
        clock.clone(),
    ));
    tasks.spawn(
        SyncTask {
            connector,
            updates: updates_tx,
            bundle: bundle_tx,
            storage,
        }
        .run(),
    );
    tasks.spawn(manager.run());

    let listener = workload_api::bind(&config.socket_path)?;
    tracing::info!(socket = %config.socket_path.display(), "Workload API listening");
    let attestor = Arc::new(UnixAttestor::new(
        config.procfs_root.clone(),
        config.hash_size_limit,
    ));
    let api = WorkloadApi::new(cache_rx, attestor, clock, jwt_svids, config.jwt_leeway);

    // Streams never finish on their own, so the server is dropped rather
    // than drained on shutdown.
    let result = tokio::select! {
        served = workload_api::serve(listener, api, std::future::pending()) => {
            served.context("Workload API stopped")
        }
        _ = shutdown => {
            tracing::info!("shutting down");
            Ok(())
        }
        Some(done) = tasks.join_next() => {
            Err(anyhow::anyhow!("an agent task stopped unexpectedly: {done:?}"))
        }
    };
    tasks.abort_all();
    if let Err(e) = std::fs::remove_file(&config.socket_path) {
        tracing::debug!(error = %e, "socket already gone");
    }
    result
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
