//! The Workload API's socket: binding it safely, and taking connections with
//! a per-uid and a total cap, each caller pinned at accept, idle and
//! half-sent requests timed out (see `signet_runtime::conn`).

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use signet_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use signet_runtime::conn::{accepted, ActivityLayer, ConnectionTracker, Guarded, Refusal};
use signet_runtime::rpc::RpcTimingLayer;
use signet_runtime::throttle::LogThrottle;
use tokio::net::{UnixListener, UnixStream};

use super::authz::{AuthorizationServer, Authz, ExtAuthz, ExtAuthzServer};
use super::relay::{self, RelayedStream, WorkloadPeer};
use super::sds::{Sds, SecretDiscoveryServiceServer as SdsServer};
use super::{header, WorkloadApi, WorkloadApiError};
use crate::attest::workload::peer::PeerPin;
use crate::config::WorkloadApiLimits;
use crate::telemetry::Metrics;

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
        // Envoy sends no security header: SDS is served without it.
        .add_service(SdsServer::new(Sds::new(api.clone())))
        // Decisions hold no secret and Envoy sends no header either.
        .add_service(AuthorizationServer::new(Authz::new(api.clone())))
        .add_service(ExtAuthzServer::new(ExtAuthz::new(api.clone())))
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
