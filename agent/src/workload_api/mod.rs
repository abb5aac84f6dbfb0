//! The SPIFFE Workload API on a Unix socket: checks the security header
//! (once, in an interceptor), attests the caller from the socket's peer
//! credentials and serves what the cache holds for the entries that match
//! its selectors, with the bundles of the trust domains those entries
//! federate with (see `federation`). Every call is timed by `signet_runtime::rpc`'s layer; every
//! status it answers with comes from `status`.

pub mod authz;
pub mod bundles;
pub mod federation;
pub mod header;
pub mod jwt;
pub mod jwt_bundles;
mod relay;
pub mod sds;
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
use crate::audit::{AuditLog, Outcome as AuditOutcome, WorkloadRecord};
use crate::cache::{JwtSvidCache, Snapshot};
use crate::config::{AuthzSettings, SdsSettings};
use crate::telemetry::Metrics;
use relay::WorkloadPeer;
pub use socket::{bind, serve, ServeSettings};
pub use status::SHUTTING_DOWN;
use stream::channel_with_first;
use x509::X509State;

type ResponseStream<T> = ReceiverStream<Result<T, Status>>;

/// The calls the audit log names.
const FETCH_X509: &str = "fetch_x509_svid";
const FETCH_JWT: &str = "fetch_jwt_svid";
const VALIDATE_JWT: &str = "validate_jwt_svid";

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
    /// Where each decision is recorded (the agent's own audit log).
    audit: Option<AuditLog>,
    /// Envoy SDS resource names.
    sds: SdsSettings,
    /// Envoy ext_authz's JWT-SVID principals.
    authz: AuthzSettings,
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
            audit: None,
            sds: SdsSettings::default(),
            authz: AuthzSettings::default(),
        }
    }

    /// Names SDS resources as `settings` says (`[sds]`).
    pub fn with_sds(mut self, settings: SdsSettings) -> Self {
        self.sds = settings;
        self
    }

    /// Takes ext_authz's JWT-SVID principals as `settings` says (`[authz]`).
    pub fn with_authz(mut self, settings: AuthzSettings) -> Self {
        self.authz = settings;
        self
    }

    /// Records every decision in `log`.
    pub fn with_audit(mut self, log: AuditLog) -> Self {
        self.audit = Some(log);
        self
    }

    /// One decision for the audit log: who asked (`selectors` empty when
    /// the caller was not attested), what was served or why not.
    fn record(
        &self,
        call: &str,
        peer: Option<&PeerInfo>,
        selectors: &HashSet<Selector>,
        served: Vec<String>,
        refused: Option<&Status>,
    ) {
        let Some(log) = &self.audit else { return };
        // A flood's refusals are counted by the rate limit, not logged.
        if refused.is_some_and(|s| s.code() == tonic::Code::ResourceExhausted) {
            return;
        }
        let mut selectors: Vec<String> = selectors.iter().map(ToString::to_string).collect();
        selectors.sort_unstable();
        log.record(WorkloadRecord {
            time_ms: self
                .clock
                .now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            call: call.to_owned(),
            pid: peer.and_then(|p| p.pid),
            uid: peer.map_or(u32::MAX, |p| p.uid),
            gid: peer.map_or(u32::MAX, |p| p.gid),
            selectors,
            served,
            outcome: match refused {
                None => AuditOutcome::Ok,
                Some(s) => AuditOutcome::Refused {
                    reason: s.message().to_owned(),
                },
            },
        });
    }

    /// The caller's credentials, as the socket gave them.
    fn peer_of<T>(request: &Request<T>) -> Option<PeerInfo> {
        let cred = request
            .extensions()
            .get::<ConnInfo<WorkloadPeer>>()
            .and_then(|info| info.peer.uds.peer_cred)?;
        Some(PeerInfo {
            pid: cred.pid(),
            uid: cred.uid(),
            gid: cred.gid(),
        })
    }

    /// The caller's uid within its call rate, or `ResourceExhausted`.
    fn within_rate(&self, peer: &PeerInfo) -> Result<(), Status> {
        self.calls.try_take(&peer.uid, 1).map_err(|e| {
            self.metrics.rate_limited.inc();
            status::rate_limited(peer.uid, self.calls.rate(), e.retry_after)
        })
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

    /// Readiness, rate, attestation: the checks every RPC starts with
    /// (after the interceptor's header check). A refusal is recorded as
    /// `call`'s decision.
    async fn admit<T>(&self, call: &str, request: &Request<T>) -> Result<Admitted, Status> {
        let peer = Self::peer_of(request);
        let admitted = self.admit_peer(request, peer.as_ref()).await;
        if let Err(s) = &admitted {
            self.record(call, peer.as_ref(), &HashSet::new(), vec![], Some(s));
        }
        admitted
    }

    async fn admit_peer<T>(
        &self,
        request: &Request<T>,
        peer: Option<&PeerInfo>,
    ) -> Result<Admitted, Status> {
        let snapshot = self.ready_snapshot()?;
        let pin = request
            .extensions()
            .get::<ConnInfo<WorkloadPeer>>()
            .map(|info| &info.peer.pin);
        let (peer, pin) = peer.zip(pin).ok_or_else(status::unknown_caller)?;
        // Before any attestation work: a flooding uid costs a map lookup.
        self.within_rate(peer)?;
        let options = AttestOptions {
            hash_binary: uses_binary_hash(&snapshot),
        };
        // The selectors count only if the process that connected, running
        // what it ran then, is the one they were read from.
        let attested = match self.attestor.attest(peer, options).await {
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
        Ok(Admitted {
            snapshot,
            selectors: selectors.into_iter().collect(),
            peer: *peer,
        })
    }
}

/// A caller that passed [`WorkloadApi::admit`].
struct Admitted {
    snapshot: Arc<Snapshot>,
    selectors: HashSet<Selector>,
    peer: PeerInfo,
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
        let Admitted {
            snapshot,
            selectors,
            peer,
        } = self.admit(FETCH_X509, &request).await?;
        let first = match x509::x509_state(&snapshot, &selectors, self.clock.now()) {
            X509State::NoIdentity => {
                let refused = x509::no_identity();
                self.record(FETCH_X509, Some(&peer), &selectors, vec![], Some(&refused));
                return Err(refused);
            }
            // The stream task waits out the issuing grace.
            X509State::Pending => None,
            X509State::Ready(response) => Some(response),
        };
        let served = first
            .as_ref()
            .map(|r| r.svids.iter().map(|s| s.spiffe_id.clone()).collect())
            .unwrap_or_default();
        self.record(FETCH_X509, Some(&peer), &selectors, served, None);
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
        let Admitted {
            snapshot,
            selectors,
            ..
        } = self.admit("fetch_x509_bundles", &request).await?;
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
        let Admitted {
            snapshot,
            selectors,
            peer,
        } = self.admit(FETCH_JWT, &request).await?;
        let fetched = jwt::fetch_jwt_svids(
            &self.jwt_svids,
            &snapshot,
            &selectors,
            requested.as_ref(),
            &request.get_ref().audience,
        )
        .await;
        match &fetched {
            Ok(r) => {
                let served = r.svids.iter().map(|s| s.spiffe_id.clone()).collect();
                self.record(FETCH_JWT, Some(&peer), &selectors, served, None);
            }
            Err(s) => self.record(FETCH_JWT, Some(&peer), &selectors, vec![], Some(s)),
        }
        Ok(Response::new(fetched?))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let Admitted {
            snapshot,
            selectors,
            ..
        } = self.admit("fetch_jwt_bundles", &request).await?;
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
        let peer = Self::peer_of(&request);
        // Not attested, but within its rate like any call.
        if let Some(p) = &peer {
            self.within_rate(p)?;
        }
        let snapshot = self.ready_snapshot()?;
        // Any caller may validate a token of the own trust domain (as in
        // SPIRE): only public keys are used, so the caller is not attested.
        // A federated trust domain's keys are only for callers whose entries
        // federate with it: only then is the caller attested.
        let (snapshot, federated) =
            match federation::claimed_trust_domain(&snapshot, &request.get_ref().svid) {
                None => (snapshot, None),
                Some(td) => {
                    let admitted = self.admit(VALIDATE_JWT, &request).await?;
                    let checked =
                        jwt::check_federates_with(&admitted.snapshot, &admitted.selectors, &td);
                    if let Err(s) = &checked {
                        self.record(
                            VALIDATE_JWT,
                            peer.as_ref(),
                            &admitted.selectors,
                            vec![],
                            Some(s),
                        );
                    }
                    checked?;
                    (admitted.snapshot, Some(td))
                }
            };
        let validated = jwt::validate(
            &snapshot,
            request.get_ref(),
            federated.as_ref(),
            self.clock.now(),
            self.jwt_leeway,
        );
        match &validated {
            Ok(r) => self.record(
                VALIDATE_JWT,
                peer.as_ref(),
                &HashSet::new(),
                vec![r.spiffe_id.clone()],
                None,
            ),
            Err(s) => self.record(
                VALIDATE_JWT,
                peer.as_ref(),
                &HashSet::new(),
                vec![],
                Some(s),
            ),
        }
        Ok(Response::new(validated?))
    }
}

#[cfg(test)]
mod tests;
