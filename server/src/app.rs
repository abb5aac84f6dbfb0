//! Wiring: datastore, this server's record in it, CA, change bus, the Node
//! API on TCP+TLS and the Admin API on its Unix socket, started in that
//! order and stopped gracefully.

use std::fs;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use signet_core::clock::unix_seconds;
use signet_core::{Clock, SystemClock, TrustDomain};
use signet_proto::admin::admin_server::AdminServer;
use signet_proto::node::node_server::NodeServer;
use signet_runtime::conn::ActivityLayer;
use signet_runtime::rpc::RpcTimingLayer;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::Server;

use crate::api::admin::AdminService;
use crate::api::node::NodeService;
use crate::api::tls::{server_config, start_server_svid, tls_incoming};
use crate::api::ServerState;
use crate::attest::{Attestors, JoinTokenAttestor, TpmAttestor, X509PopAttestor};
use crate::ca::{CaSettings, CertificateAuthority, DiskKeys, KeyManager, Pkcs11Keys};
use crate::config::KeyManagerSettings;
use crate::config::RuntimeConfig;
use crate::datastore::{DataStore, ServerRecord};
use crate::events::ChangeBus;
use crate::revocation::Revocations;
use crate::telemetry::Metrics;

const STOP_GRACE: Duration = Duration::from_secs(5);
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How often a server says it is alive (`server list` shows when it last did).
const HEARTBEAT: Duration = Duration::from_secs(30);

type ServeHandle = JoinHandle<Result<(), tonic::transport::Error>>;

/// Runs the server until `shutdown` completes.
pub async fn run(config: RuntimeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    start(config, Arc::new(SystemClock))
        .await?
        .serve_until(shutdown)
        .await
}

/// A started server: both APIs are listening.
pub struct RunningServer {
    pub node_addr: SocketAddr,
    pub admin_socket: PathBuf,
    pub trust_domain: TrustDomain,
    /// Where `/live`, `/ready` and `/metrics` answer, when enabled.
    pub telemetry_addr: Option<SocketAddr>,
    /// Where the SPIFFE bundle endpoint answers, when enabled.
    pub bundle_endpoint_addr: Option<SocketAddr>,
    /// Where OIDC discovery is served, when it is.
    pub oidc_addr: Option<SocketAddr>,
    /// What `/metrics` serves (read in-process by the bench).
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    node: ServeHandle,
    admin: ServeHandle,
    background: Vec<JoinHandle<()>>,
    /// Writes a last checkpoint when the server stops: awaited, not aborted.
    checkpoints: JoinHandle<()>,
    ds: Arc<dyn DataStore>,
}

/// Starts every part; the admin socket appears last, once all is ready.
pub async fn start(config: RuntimeConfig, clock: Arc<dyn Clock>) -> anyhow::Result<RunningServer> {
    // It holds the CA keys and the datastore: ours alone, or not at all.
    signet_runtime::dirs::ensure_own_dir(&config.data_dir, 0o700)
        .with_context(|| format!("data dir {:?}", config.data_dir))?;
    let node_limits = node_api_limits(&config);
    let server_id = crate::server_id::load_or_create(&config.data_dir).await?;
    let url = config.datastore_url();
    let ds = crate::datastore::open(&url, &config.postgres)
        .await
        .with_context(|| format!("opening the datastore {url}"))?;
    tracing::info!(datastore = %url, backend = ds.backend(), server_id = %server_id, "datastore open");
    let mut record = ServerRecord {
        id: server_id.clone(),
        hostname: hostname(),
        address: config.bind.to_string(),
        started_at: unix_seconds(clock.now()),
        last_seen: unix_seconds(clock.now()),
    };
    warn_if_id_in_use(ds.as_ref(), &record).await;
    // Before the CA loads: this also takes over authorities stored before
    // servers had ids.
    ds.register_server(record.clone()).await?;
    let keys: Arc<dyn KeyManager> = match &config.key_manager {
        KeyManagerSettings::Disk => Arc::new(DiskKeys::new(config.data_dir.join("ca"))),
        KeyManagerSettings::Pkcs11(settings) => {
            let settings = settings.clone();
            let keys = tokio::task::spawn_blocking(move || Pkcs11Keys::open(&settings)).await??;
            tracing::info!(token = %keys.token_label(), "CA and JWT keys held by the PKCS#11 token");
            Arc::new(keys)
        }
    };
    let (ca, created) = CertificateAuthority::start(
        CaSettings {
            trust_domain: config.trust_domain.clone(),
            server_id: server_id.clone(),
            upstream: config.upstream.clone(),
            ca_ttl: config.ca_ttl,
            default_svid_ttl: config.default_x509_svid_ttl,
            default_jwt_svid_ttl: config.default_jwt_svid_ttl,
            backdate: config.not_before_backdate,
            schedule: config.authority_schedule,
            jwt_key_type: config.jwt_key_type,
            jwt_issuer: config.oidc.as_ref().map(|o| o.issuer.clone()),
        },
        clock.clone(),
        ds.clone(),
        keys,
    )
    .await?;
    let ca = Arc::new(ca);
    tracing::info!(
        created,
        not_after = unix_seconds(ca.not_after()),
        "{} CA",
        if created {
            "generated a new"
        } else {
            "loaded the"
        }
    );
    warn_of_reserved_entries(ds.as_ref(), &config.trust_domain).await?;
    let bus = ChangeBus::start(ds.clone()).await?;
    let mut background = vec![ca.follow(&bus)];
    let (revocations, keeper) =
        Revocations::start(ds.clone(), ca.clone(), &bus, server_id.clone()).await?;
    background.push(keeper);
    let metrics = Arc::new(Metrics::new());
    let audit = crate::audit::Auditor::start(ds.clone(), &server_id, clock.clone());
    let (federation, refresher) = crate::federation::Federation::start(
        ds.clone(),
        ca.clone(),
        &bus,
        config.federation.bounds,
        metrics.clone(),
        audit.clone(),
    );
    background.push(refresher);
    let (stop, stop_rx) = watch::channel(false);
    let join_tokens = JoinTokenAttestor::new(ds.clone(), ca.clone());
    let mut attestors = Attestors::default().with(Arc::new(join_tokens.clone()));
    if let Some(path) = &config.x509pop_ca_bundle {
        let cas = crate::attest::x509pop::load_bundle(path)?;
        tracing::info!(
            bundle = %path.display(),
            cas = cas.len(),
            "x509pop node attestation enabled"
        );
        attestors = attestors.with(Arc::new(X509PopAttestor::new(cas, ds.clone(), ca.clone())));
    }
    if let Some(tpm) = &config.tpm {
        let cas = crate::attest::x509pop::load_bundle(&tpm.ca_bundle_path)?;
        tracing::info!(
            bundle = %tpm.ca_bundle_path.display(),
            cas = cas.len(),
            pcrs = ?tpm.pcrs,
            "tpm node attestation enabled"
        );
        attestors = attestors.with(Arc::new(TpmAttestor::new(
            cas,
            tpm.pcrs.clone(),
            ds.clone(),
            ca.clone(),
        )));
    }
    metrics.register_x509_signatures(ca.x509_signature_counter());
    let limits = Arc::new(crate::ratelimit::RateLimiters::new(
        config.rate_limits,
        metrics.clone(),
        audit.clone(),
    ));
    let (anomalies, detector) = crate::anomaly::Anomalies::start(
        ds.clone(),
        config.anomaly.clone(),
        crate::anomaly::Context {
            metrics: metrics.clone(),
            audit: audit.clone(),
            limits: limits.clone(),
            clock: clock.clone(),
        },
    );
    background.push(detector);
    // Bound now: the Admin API hands out links to it.
    let dashboard = match config.dashboard_bind {
        None => None,
        Some(addr) => Some(
            crate::dashboard::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("binding the dashboard to {addr}: {e}"))?,
        ),
    };
    let state = ServerState {
        ds: ds.clone(),
        ca: ca.clone(),
        bus: bus.clone(),
        revocations,
        server_id: server_id.clone(),
        limits,
        anomalies,
        last_seen: Arc::default(),
        dashboard: dashboard.as_ref().map(|(_, link)| link.clone()),
        audit,
        federation,
        join_tokens,
        join_token_ttl: config.join_token_ttl,
        attestors,
        metrics: metrics.clone(),
        shutdown: stop_rx.clone(),
    };

    crate::api::admin::federation::apply_configured(&state, &config.federation.relationships)
        .await?;
    let (resolver, renew_task) = start_server_svid(ca.clone())?;
    background.push(tokio::spawn(renew_task));
    if let Some((listener, link)) = dashboard {
        background.extend(crate::dashboard::serve(
            listener,
            &link,
            state.clone(),
            resolver.clone(),
            stop_rx.clone(),
        )?);
    }
    let bundle_endpoint_addr = match config.federation.endpoint.clone() {
        None => None,
        Some(settings) => {
            let endpoint = crate::federation::endpoint::start(
                settings,
                ca.clone(),
                resolver.clone(),
                metrics.clone(),
                stop_rx.clone(),
            )
            .await?;
            background.extend(endpoint.tasks);
            Some(endpoint.addr)
        }
    };
    let oidc_addr = match config.oidc.clone() {
        Some(settings) => match settings.bind {
            Some(bind) => {
                let (addr, tasks) =
                    crate::oidc::start(settings, bind, ca.clone(), stop_rx.clone()).await?;
                background.extend(tasks);
                Some(addr)
            }
            None => None,
        },
        None => None,
    };
    background.push(tokio::spawn(prune(state.clone(), clock.clone())));
    let audit_key = {
        let dir = config.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            crate::audit::checkpoint::AuditKey::load_or_create(&dir)
        })
        .await??
    };
    let checkpoints = tokio::spawn(crate::audit::checkpoint::run(
        ds.clone(),
        Arc::new(audit_key),
        config.audit.clone(),
        server_id.clone(),
        clock.clone(),
        stop_rx.clone(),
    ));
    background.push(crate::audit::transitions::start(
        ca.clone(),
        state.audit.clone(),
        server_id.clone(),
        stop_rx.clone(),
    ));
    if !config.audit.forward.is_off() {
        background.push(tokio::spawn(crate::audit::forward::run(
            ds.clone(),
            server_id.clone(),
            config.audit.forward.clone(),
            config.data_dir.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(retention) = config.audit.retention {
        background.push(tokio::spawn(crate::audit::retention::run(
            ds.clone(),
            state.audit.clone(),
            retention,
            clock.clone(),
            stop_rx.clone(),
        )));
    }

    let telemetry_addr = match config.telemetry_bind {
        None => None,
        Some(addr) => {
            let endpoint = signet_runtime::probes::Endpoint::bind(addr)
                .await
                .with_context(|| format!("binding the telemetry endpoint to {addr}"))?;
            let local = endpoint.local_addr();
            let probes = Arc::new(crate::telemetry::probes::ServerProbes {
                state: state.clone(),
            });
            background.push(tokio::spawn(
                endpoint.serve(probes, stopped(stop_rx.clone())),
            ));
            tracing::info!(addr = %local, "serving /live, /ready and /metrics");
            Some(local)
        }
    };
    let tls = server_config(ca.clone(), resolver)?;
    let tcp = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding the Node API to {}", config.bind))?;
    let node_addr = tcp.local_addr()?;
    if record.address != node_addr.to_string() {
        record.address = node_addr.to_string();
        ds.register_server(record).await?;
    }
    background.push(tokio::spawn(heartbeat(ds.clone(), server_id, clock)));
    let incoming = tls_incoming(tcp, tls, node_limits, metrics.clone());
    let node = tokio::spawn(
        Server::builder()
            .http2_max_header_list_size(NODE_API_MAX_HEADER_LIST)
            .timeout(NODE_API_REQUEST_TIMEOUT)
            .layer(ActivityLayer::<TlsConnectInfo<TcpConnectInfo>>::new())
            .layer(RpcTimingLayer(metrics.clone()))
            .add_service(NodeServer::new(NodeService::new(state.clone())))
            .serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone())),
    );

    let unix = bind_admin_socket(&config.admin_socket)?;
    let admin = tokio::spawn(
        Server::builder()
            .layer(RpcTimingLayer(metrics.clone()))
            .add_service(AdminServer::new(AdminService::new(state)))
            .serve_with_incoming_shutdown(UnixListenerStream::new(unix), stopped(stop_rx)),
    );
    tracing::info!(
        trust_domain = %config.trust_domain,
        node_api = %node_addr,
        admin_socket = %config.admin_socket.display(),
        "signet-server started: trust domain {}, Node API on {}, admin socket {}",
        config.trust_domain,
        node_addr,
        config.admin_socket.display()
    );
    signet_runtime::systemd::ready(&format!(
        "trust domain {}, Node API on {node_addr}",
        config.trust_domain
    ));
    Ok(RunningServer {
        metrics: metrics.clone(),
        node_addr,
        telemetry_addr,
        bundle_endpoint_addr,
        oidc_addr,
        admin_socket: config.admin_socket,
        trust_domain: config.trust_domain,
        stop,
        node,
        admin,
        background,
        checkpoints,
        ds,
    })
}

impl RunningServer {
    /// Serves until `shutdown` completes (or an API fails), then stops.
    pub async fn serve_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let failure = tokio::select! {
            _ = shutdown => None,
            r = &mut self.node => Some(("Node API", r)),
            r = &mut self.admin => Some(("Admin API", r)),
        };
        let failed = failure.map(|(which, r)| match r {
            Ok(Ok(())) => anyhow::anyhow!("{which} stopped unexpectedly"),
            Ok(Err(e)) => anyhow::anyhow!("{which} failed: {e}"),
            Err(e) => anyhow::anyhow!("{which} task failed: {e}"),
        });
        self.stop().await;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Graceful stop: streams end, the admin socket is removed, the
    /// datastore is closed.
    pub async fn stop(self) {
        signet_runtime::systemd::stopping();
        let _ = self.stop.send(true);
        for handle in [self.admin, self.node] {
            let abort = handle.abort_handle();
            if tokio::time::timeout(STOP_GRACE, handle).await.is_err() {
                abort.abort();
            }
        }
        let abort = self.checkpoints.abort_handle();
        if tokio::time::timeout(STOP_GRACE, self.checkpoints)
            .await
            .is_err()
        {
            abort.abort();
        }
        for task in &self.background {
            task.abort();
        }
        if let Err(e) = fs::remove_file(&self.admin_socket) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, "removing the admin socket failed");
            }
        }
        self.ds.close().await;
        tracing::info!("signet-server stopped");
    }
}

/// Entries stored with a reserved (`/signet`) ID before such IDs were
/// refused are served to no one; each is named so an admin deletes it.
async fn warn_of_reserved_entries(ds: &dyn DataStore, td: &TrustDomain) -> anyhow::Result<()> {
    for rec in ds.entries_with_reserved_ids(td).await? {
        tracing::warn!(
            entry_id = %rec.entry.id,
            spiffe_id = %rec.entry.spiffe_id,
            parent_id = %rec.entry.parent_id,
            "entry has a reserved SPIFFE ID (under /signet) and is refused service; delete it with `signet-server entry delete --id {}`",
            rec.entry.id
        );
    }
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A header list of the Node API decodes to at most this (hyper's default
/// is 16 MiB): agents send a few hundred bytes.
const NODE_API_MAX_HEADER_LIST: u32 = 16 * 1024;
/// From a request's headers to its response's (streams: their first
/// message): a request whose body never comes stops holding its connection.
/// A signing batch of 1024 takes well under a second.
const NODE_API_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Descriptors kept free of Node API connections: the datastore, the
/// admin socket and its clients, the CA files, logs.
const FDS_RESERVED: u64 = 256;

/// The Node API's bounds, the total capped to what the open-file limit
/// (raised to its hard limit first) can take.
fn node_api_limits(config: &RuntimeConfig) -> crate::config::NodeApiLimits {
    let mut limits = config.node_api;
    limits.max_connections =
        signet_runtime::rlimit::raise_and_fit(limits.max_connections, 1, FDS_RESERVED, "Node API");
    limits
}

/// Binds the admin socket: its directory created 0700 if missing and
/// refused if another user owns it or can write to it (they could put
/// their own socket there), a stale socket file replaced, the socket itself
/// 0600. Refuses to take over a socket another server still answers on.
fn bind_admin_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        signet_runtime::dirs::ensure_own_dir(dir, 0o700)
            .with_context(|| format!("admin socket directory {dir:?}"))?;
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("admin socket path {path:?} exists and is not a socket");
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("admin socket {path:?} is in use by another running server");
        }
        fs::remove_file(path).with_context(|| format!("removing stale socket {path:?}"))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding admin socket {path:?}"))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {path:?}"))?;
    Ok(listener)
}

/// Drops expired join tokens, issued-credential records and revocations
/// (when revocations went, the CRLs are rebuilt and pushed), events beyond
/// the log's window, and removed servers' expired authorities. Every server
/// of a group runs it; each step is idempotent.
async fn prune(state: ServerState, clock: Arc<dyn Clock>) {
    loop {
        tokio::time::sleep(PRUNE_EVERY).await;
        let now = unix_seconds(clock.now());
        // An hour of grace, so a late agent still hears "join token expired".
        match state.ds.prune_join_tokens(now - 3600).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "dropped expired join tokens"),
            Err(e) => tracing::warn!(error = %e, "pruning join tokens failed"),
        }
        match state.ds.prune_expired(now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(pruned = n, "dropped revocations of expired credentials");
                refresh_crls(&state).await;
            }
            Err(e) => tracing::warn!(error = %e, "pruning revocations failed"),
        }
        match state.ds.prune_events(crate::events::KEPT_EVENTS).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "dropped old events from the log"),
            Err(e) => tracing::warn!(error = %e, "pruning the event log failed"),
        }
        match state.ds.prune_authorities(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                pruned = n,
                "dropped expired authorities of removed servers from the bundle"
            ),
            Err(e) => tracing::warn!(error = %e, "pruning removed servers' authorities failed"),
        }
    }
}

async fn refresh_crls(state: &ServerState) {
    if let Err(e) = state.revocations.refresh().await {
        tracing::warn!(error = %e, "rebuilding the CRLs failed");
    }
}

/// Two servers with one id would each take the other's authorities for
/// their own (a data dir copied to make a second server): said loudly.
async fn warn_if_id_in_use(ds: &dyn DataStore, me: &ServerRecord) {
    let Ok(servers) = ds.list_servers().await else {
        return;
    };
    let recent = me.started_at - 2 * HEARTBEAT.as_secs() as i64;
    // A port of 0 is chosen at bind: it says nothing yet.
    let fixed_port = !me.address.ends_with(":0");
    if let Some(other) = servers.iter().find(|s| {
        s.id == me.id
            && s.last_seen >= recent
            && (s.hostname != me.hostname || (fixed_port && s.address != me.address))
    }) {
        tracing::error!(
            server_id = %me.id,
            other_host = %other.hostname,
            other_address = %other.address,
            "another server with this server's id was alive moments ago: was this data dir copied? Each server needs its own (remove its server_id file to make a new id, and its ca/ keys)"
        );
    }
}

/// Says every so often that this server is alive.
async fn heartbeat(ds: Arc<dyn DataStore>, server_id: String, clock: Arc<dyn Clock>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if let Err(e) = ds.touch_server(&server_id, unix_seconds(clock.now())).await {
            tracing::debug!(error = %e, "recording this server's heartbeat failed");
        }
    }
}

/// The host's name, for `server list`.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}
