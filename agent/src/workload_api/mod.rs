//! The SPIFFE Workload API on a Unix socket: checks the security header
//! (once, in an interceptor), attests the caller from the socket's peer
//! credentials and serves what the cache holds for the entries that match
//! its selectors, with the bundles of the trust domains those entries
//! federate with (see `federation`). Every call is timed by `signet_runtime::rpc`'s layer; every
//! status it answers with comes from `status`.

pub mod bundles;
pub mod federation;
pub mod header;
pub mod jwt;
pub mod jwt_bundles;
mod relay;
mod socket;
pub mod status;
mod stream;
pub mod x509;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use signet_core::{Clock, Selector};
use signet_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use signet_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use signet_runtime::conn::ConnInfo;
use signet_runtime::ratelimit::{KeyedLimiter, Rate};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::attest::workload::{AttestOptions, PeerInfo, WorkloadAttestor};
use crate::cache::{JwtSvidCache, Snapshot};
use crate::telemetry::Metrics;
use relay::WorkloadPeer;
pub use socket::{bind, serve, ServeSettings};
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
    /// Calls per caller uid (`[workload_api] rate_limit`).
    calls: Arc<KeyedLimiter<u32>>,
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
            calls: Arc::new(KeyedLimiter::new(Rate::OFF)),
        }
    }

    /// Limits each caller uid to `rate` calls.
    pub fn with_rate_limit(mut self, rate: Rate) -> Self {
        self.calls = Arc::new(KeyedLimiter::new(rate));
        self
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
        // Before any attestation work: a flooding uid costs a map lookup.
        self.calls.try_take(&peer.uid, 1).map_err(|e| {
            self.metrics.rate_limited.inc();
            status::rate_limited(peer.uid, self.calls.rate(), e.retry_after)
        })?;
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
        jwt::check_validate_request(request.get_ref())?;
        let snapshot = self.ready_snapshot()?;
        // Any caller may validate a token of the own trust domain (as in
        // SPIRE): only public keys are used, so the caller is not attested.
        // A federated trust domain's keys are only for callers whose entries
        // federate with it: only then is the caller attested.
        let (snapshot, federated) =
            match federation::claimed_trust_domain(&snapshot, &request.get_ref().svid) {
                None => (snapshot, None),
                Some(td) => {
                    let (snapshot, selectors) = self.admit(&request).await?;
                    jwt::check_federates_with(&snapshot, &selectors, &td)?;
                    (snapshot, Some(td))
                }
            };
        let response = jwt::validate(
            &snapshot,
            request.get_ref(),
            federated.as_ref(),
            self.clock.now(),
            self.jwt_leeway,
        )?;
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests;
