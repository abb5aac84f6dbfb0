//! The SPIFFE Workload API on a Unix socket: checks the security header
//! (once, in an interceptor), attests the caller from the socket's peer
//! credentials and serves what the cache holds for the entries that match
//! its selectors. Every call is timed by `signet_runtime::rpc`'s layer; every
//! status it answers with comes from `status`.

pub mod bundles;
pub mod header;
pub mod jwt;
pub mod jwt_bundles;
mod relay;
pub mod status;
mod stream;
pub mod x509;

use std::collections::HashSet;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use signet_core::{Clock, Selector};
use signet_proto::workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use signet_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use signet_runtime::conn::{
    accepted, ActivityLayer, ConnInfo, ConnectionTracker, Guarded, Refusal,
};
use signet_runtime::rpc::RpcTimingLayer;
use signet_runtime::throttle::LogThrottle;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::attest::workload::peer::PeerPin;
use crate::attest::workload::{AttestOptions, PeerInfo, WorkloadAttestor};
use crate::cache::{JwtSvidCache, Snapshot};
use crate::config::WorkloadApiLimits;
use crate::telemetry::Metrics;
use relay::{RelayedStream, WorkloadPeer};
pub use status::SHUTTING_DOWN;
use stream::channel_with_first;
use x509::X509State;

type ResponseStream<T> = ReceiverStream<Result<T, Status>>;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadApiError {
    #[error("Workload API socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("Workload API socket directory: {0}")]
    Directory(#[from] signet_runtime::dirs::DirError),
    #[error("Workload API server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

#[derive(Clone)]
pub struct WorkloadApi {
    cache: watch::Receiver<Arc<Snapshot>>,
    attestor: Arc<dyn WorkloadAttestor>,
    clock: Arc<dyn Clock>,
    jwt_svids: Arc<JwtSvidCache>,
    jwt_leeway: Duration,
    metrics: Arc<Metrics>,
    /// Turns true on shutdown: open streams end with `Unavailable`.
    drain: watch::Receiver<bool>,
}

impl WorkloadApi {
    pub fn new(
        cache: watch::Receiver<Arc<Snapshot>>,
        attestor: Arc<dyn WorkloadAttestor>,
        clock: Arc<dyn Clock>,
        jwt_svids: Arc<JwtSvidCache>,
        jwt_leeway: Duration,
    ) -> Self {
        Self {
            cache,
            attestor,
            clock,
            jwt_svids,
            jwt_leeway,
            metrics: Arc::new(Metrics::new()),
            drain: watch::channel(false).1,
        }
    }

    /// Records into `metrics`; ends the streams when `drain` turns true.
    pub fn with_telemetry(mut self, metrics: Arc<Metrics>, drain: watch::Receiver<bool>) -> Self {
        self.metrics = metrics;
        self.drain = drain;
        self
    }

    /// Runs a stream task, counted as a connected workload, until it ends
    /// or the agent drains.
    fn spawn_stream<T: Send + 'static>(
        &self,
        tx: mpsc::Sender<Result<T, Status>>,
        stream: impl Future<Output = ()> + Send + 'static,
    ) {
        let guard = self.metrics.stream_opened();
        let mut drain = self.drain.clone();
        // Resolves only when a drain is asked for: a closed channel means
        // no one can ask any more.
        let drained = async move {
            if drain.wait_for(|d| *d).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::spawn(async move {
            let _guard = guard;
            tokio::select! {
                () = stream => {}
                () = drained => {
                    let _ = tx.send(Err(status::shutting_down())).await;
                }
            }
        });
    }

    fn ready_snapshot(&self) -> Result<Arc<Snapshot>, Status> {
        let snapshot = self.cache.borrow().clone();
        if !snapshot.is_ready() {
            return Err(status::not_ready());
        }
        Ok(snapshot)
    }

    /// Readiness, attestation: the checks every RPC starts with (after the
    /// interceptor's header check).
    async fn admit<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(Arc<Snapshot>, HashSet<Selector>), Status> {
        let snapshot = self.ready_snapshot()?;
        let caller = request
            .extensions()
            .get::<ConnInfo<WorkloadPeer>>()
            .map(|info| &info.peer);
        let (cred, pin) = caller
            .and_then(|c| c.uds.peer_cred.map(|cred| (cred, &c.pin)))
            .ok_or_else(status::unknown_caller)?;
        let peer = PeerInfo {
            pid: cred.pid(),
            uid: cred.uid(),
            gid: cred.gid(),
        };
        let options = AttestOptions {
            hash_binary: uses_binary_hash(&snapshot),
        };
        // The selectors count only if the process that connected, running
        // what it ran then, is the one they were read from.
        let attested = match self.attestor.attest(&peer, options).await {
            Ok(selectors) => pin.verify().map(|()| selectors),
            Err(e) => Err(e),
        };
        let selectors = attested.map_err(|e| {
            self.metrics.attestation_failures.inc();
            tracing::warn!(pid = ?peer.pid, uid = peer.uid, error = %e, "workload attestation failed");
            status::attestation_failed(e)
        })?;
        tracing::debug!(pid = ?peer.pid, uid = peer.uid, selectors = selectors.len(), "workload attested");
        // A possibly newer snapshot after the (blocking) attestation.
        let snapshot = self.cache.borrow().clone();
        Ok((snapshot, selectors.into_iter().collect()))
    }
}

/// Hashing a binary is costly: only when some entry selects on it.
fn uses_binary_hash(snapshot: &Snapshot) -> bool {
    snapshot.entries.values().any(|c| {
        c.entry
            .selectors
            .iter()
            .any(|s| s.kind() == "unix" && s.value().starts_with("sha256:"))
    })
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = ResponseStream<X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let (snapshot, selectors) = self.admit(&request).await?;
        let first = match x509::x509_state(&snapshot, &selectors, self.clock.now()) {
            X509State::NoIdentity => return Err(x509::no_identity()),
            // The stream task waits out the issuing grace.
            X509State::Pending => None,
            X509State::Ready(response) => Some(response),
        };
        let (tx, rx) = channel_with_first(first.clone());
        self.spawn_stream(
            tx.clone(),
            x509::stream_x509(self.cache.clone(), selectors, self.clock.clone(), tx, first),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let (snapshot, selectors) = self.admit(&request).await?;
        let first = bundles::bundles_state(&snapshot, &selectors).ok_or_else(x509::no_identity)?;
        let (tx, rx) = channel_with_first(Some(first.clone()));
        self.spawn_stream(
            tx.clone(),
            bundles::stream_bundles(self.cache.clone(), selectors, tx, Some(first)),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let requested = jwt::check_fetch_request(request.get_ref())?;
        let (snapshot, selectors) = self.admit(&request).await?;
        let response = jwt::fetch_jwt_svids(
            &self.jwt_svids,
            &snapshot,
            &selectors,
            requested.as_ref(),
            &request.get_ref().audience,
        )
        .await?;
        Ok(Response::new(response))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let (snapshot, selectors) = self.admit(&request).await?;
        let first =
            jwt_bundles::jwt_bundles_state(&snapshot, &selectors).ok_or_else(x509::no_identity)?;
        let (tx, rx) = channel_with_first(Some(first.clone()));
        self.spawn_stream(
            tx.clone(),
            jwt_bundles::stream_jwt_bundles(self.cache.clone(), selectors, tx, Some(first)),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        // Any caller may validate (as in SPIRE): only public keys are used,
        // so the caller is not attested.
        let request = request.into_inner();
        jwt::check_validate_request(&request)?;
        let snapshot = self.ready_snapshot()?;
        let response = jwt::validate(&snapshot, &request, self.clock.now(), self.jwt_leeway)?;
        Ok(Response::new(response))
    }
}

/// Binds the socket: its directory created 0755 if missing and refused if
/// another user owns it or can write to it (they could swap the socket), a
/// stale socket from a previous run removed, the socket itself
/// world-connectable (0777).
pub fn bind(path: &Path) -> Result<UnixListener, WorkloadApiError> {
    let err = |source| WorkloadApiError::Socket {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        signet_runtime::dirs::ensure_own_dir(parent, 0o755)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(err)?,
        Ok(_) => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(err)?;
    Ok(listener)
}

/// How the Workload API takes connections.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Where callers' processes are read, to pin them at accept.
    pub procfs_root: PathBuf,
    pub limits: WorkloadApiLimits,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            procfs_root: crate::config::DEFAULT_PROCFS_ROOT.into(),
            limits: WorkloadApiLimits::default(),
        }
    }
}

type Served = Guarded<RelayedStream, u32>;

/// From a request's headers to its response's: a request whose body never
/// arrives is answered DeadlineExceeded then, and stops holding its
/// connection open. FetchJWTSVID may wait for a mint (10 s) after
/// attestation (2 s); streams only count until their first answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the Workload API on `listener` until `shutdown` completes. Each
/// connection counts against its uid's cap and the total, its caller is
/// pinned, and it is closed when idle (see `signet_runtime::conn`).
pub async fn serve(
    listener: UnixListener,
    api: WorkloadApi,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkloadApiError> {
    let limits = settings.limits;
    let tracker = ConnectionTracker::new(limits.max_connections_per_uid, limits.max_connections);
    tracing::info!(
        per_uid = tracker.per_peer_limit(),
        total = tracker.total_limit(),
        first_request_timeout_ms = limits.timeouts.first_request.as_millis() as u64,
        idle_timeout_ms = limits.timeouts.idle.as_millis() as u64,
        "Workload API connection limits"
    );
    let refused = Arc::new(LogThrottle::default());
    let metrics = api.metrics.clone();
    let counted = metrics.clone();
    let incoming = accepted(listener, "Workload API").filter_map(move |(stream, _)| {
        let admitted = admit(stream, &tracker, &settings, &refused, &counted);
        futures::future::ready(admitted.map(Ok::<_, std::io::Error>))
    });
    tonic::transport::Server::builder()
        .http2_max_header_list_size(u32::try_from(relay::MAX_HEADER_LIST).unwrap_or(u32::MAX))
        .timeout(REQUEST_TIMEOUT)
        .layer(ActivityLayer::<WorkloadPeer>::new())
        .layer(RpcTimingLayer(metrics))
        .add_service(SpiffeWorkloadApiServer::with_interceptor(
            api,
            header::interceptor,
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// A new connection, counted, its caller pinned; `None` when its uid (or
/// the agent) has as many open as allowed, after telling the client why.
fn admit(
    stream: UnixStream,
    tracker: &ConnectionTracker<u32>,
    settings: &ServeSettings,
    refused: &LogThrottle,
    metrics: &Metrics,
) -> Option<Served> {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "no peer credentials; closing the connection");
            return None;
        }
    };
    match tracker.admit(cred.uid()) {
        Ok(permit) => {
            let pin = PeerPin::at_accept(&stream, cred.pid(), &settings.procfs_root);
            let relayed = relay::relay(stream, Arc::new(pin));
            Some(Guarded::new(relayed, permit, settings.limits.timeouts))
        }
        Err(refusal) => {
            metrics.refused_connection(match refusal {
                Refusal::PeerLimit { .. } => "uid_limit",
                Refusal::TotalLimit { .. } => "total_limit",
            });
            if let Some(left_out) = refused.permit() {
                tracing::warn!(uid = cred.uid(), %refusal, similar_left_out = left_out, "refused a Workload API connection");
            }
            relay::refuse(&stream, &format!("uid {}: {refusal}", cred.uid()));
            None
        }
    }
}

#[cfg(test)]
mod tests;
