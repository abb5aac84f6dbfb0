//! The one task that keeps every federated trust domain's bundle fresh: it
//! fetches each relationship's endpoint at the bundle's refresh hint
//! (bounded by `min_refresh` and `max_refresh`), backs off after failures,
//! reloads the relationships when any server changes them, and fetches at
//! once when asked. Fetches run as their own tasks; what they store goes
//! to the datastore (and from there to every server's agents), and a
//! refusal keeps the bundle held.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use signet_core::clock::unix_seconds;
use signet_core::TrustDomain;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::{fetch, FetchError};
use super::verify::{web_pki, SpiffeEndpoint};
use super::{BundleSource, EndpointProfile};
use crate::audit::{Auditor, Decision, Outcome};
use crate::ca::CertificateAuthority;
use crate::datastore::{DataStore, DataStoreError, FederatedBundleRecord, RelationshipRecord};
use crate::events::{Change, ChangeBus, Event};
use crate::telemetry::Metrics;

/// Bounds on how often a peer is fetched, whatever its refresh hint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshBounds {
    pub min: Duration,
    pub max: Duration,
}

impl Default for RefreshBounds {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(1),
            max: Duration::from_secs(3600),
        }
    }
}

impl RefreshBounds {
    /// When to fetch again after a success: the hint, within the bounds;
    /// without a hint, SPIRE's default of five minutes.
    pub fn after_success(&self, hint: Option<u64>) -> Duration {
        Duration::from_secs(hint.unwrap_or(300)).clamp(self.min, self.max)
    }

    /// When to fetch again after `failures` in a row: from `min` doubling,
    /// at most the usual interval (a failing peer is not fetched more
    /// slowly than a healthy one).
    pub fn after_failure(&self, failures: u32, hint: Option<u64>) -> Duration {
        let step = self
            .min
            .checked_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
            .unwrap_or(self.max);
        step.min(self.after_success(hint))
    }
}

/// Why a refresh asked for by an admin gave no bundle.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    #[error("no federation relationship with {0}")]
    NoRelationship(TrustDomain),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the federation refresher has stopped (shutting down)")]
    Stopped,
}

type Reply = oneshot::Sender<Result<FederatedBundleRecord, RefreshError>>;

/// The handle: refreshes on request.
#[derive(Clone)]
pub struct Federation {
    requests: mpsc::Sender<(TrustDomain, Reply)>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation").finish_non_exhaustive()
    }
}

impl Federation {
    /// Starts the refresher following `bus`.
    pub fn start(
        ds: Arc<dyn DataStore>,
        ca: Arc<CertificateAuthority>,
        bus: &ChangeBus,
        bounds: RefreshBounds,
        metrics: Arc<Metrics>,
        audit: Auditor,
    ) -> (Self, JoinHandle<()>) {
        let (requests, queue) = mpsc::channel(16);
        let (events, _) = bus.subscribe();
        let (done_tx, done) = mpsc::unbounded_channel();
        let refresher = Refresher {
            ds,
            ca,
            bounds,
            metrics,
            audit,
            peers: BTreeMap::new(),
            waiting: HashMap::new(),
            done_tx,
        };
        let task = tokio::spawn(refresher.run(queue, events, done));
        (Self { requests }, task)
    }

    /// Fetches `td`'s bundle now; the bundle held afterwards.
    pub async fn refresh(&self, td: TrustDomain) -> Result<FederatedBundleRecord, RefreshError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((td, reply))
            .await
            .map_err(|_| RefreshError::Stopped)?;
        answer.await.map_err(|_| RefreshError::Stopped)?
    }
}

struct Peer {
    relationship: RelationshipRecord,
    next: Instant,
    failures: u32,
    /// The refresh hint of the last bundle fetched.
    hint: Option<u64>,
    fetching: bool,
}

/// A fetch's bundle as stored.
struct Stored {
    record: FederatedBundleRecord,
    /// The document's refresh hint, seconds.
    hint: Option<u64>,
    /// False when the endpoint served the bundle held already.
    changed: bool,
}

/// What a fetch task reports: the bundle stored (or unchanged), or why not.
struct Done {
    td: TrustDomain,
    /// The relationship fetched, as it was then (a change since makes the
    /// result moot).
    url: String,
    outcome: Result<Stored, FetchError>,
}

struct Refresher {
    ds: Arc<dyn DataStore>,
    ca: Arc<CertificateAuthority>,
    bounds: RefreshBounds,
    metrics: Arc<Metrics>,
    /// Records each bundle taken and each refusal.
    audit: Auditor,
    peers: BTreeMap<TrustDomain, Peer>,
    waiting: HashMap<TrustDomain, Vec<Reply>>,
    done_tx: mpsc::UnboundedSender<Done>,
}

/// How long to wait before reading the relationships again after a failure.
const RELOAD_RETRY: Duration = Duration::from_secs(1);

impl Refresher {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<(TrustDomain, Reply)>,
        mut events: broadcast::Receiver<Arc<Event>>,
        mut done: mpsc::UnboundedReceiver<Done>,
    ) {
        let mut reload_at = Some(Instant::now());
        loop {
            let due = self
                .peers
                .values()
                .filter(|p| !p.fetching)
                .map(|p| p.next)
                .chain(reload_at)
                .min();
            let sleep = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                request = requests.recv() => {
                    let Some((td, reply)) = request else { return };
                    self.asked(td, reply);
                }
                event = events.recv() => match event {
                    Ok(e) if matches!(e.change, Change::FederationChanged) => {
                        reload_at = Some(Instant::now());
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => reload_at = Some(Instant::now()),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                finished = done.recv() => {
                    if let Some(d) = finished {
                        self.finished(d);
                    }
                }
                _ = sleep => {
                    if reload_at.is_some_and(|at| at <= Instant::now()) {
                        reload_at = match self.reload().await {
                            Ok(()) => None,
                            Err(e) => {
                                tracing::warn!(error = %e, "reading the federation relationships failed; retrying");
                                Some(Instant::now() + RELOAD_RETRY)
                            }
                        };
                    }
                    self.start_due();
                }
            }
        }
    }

    /// Takes the stored relationships: new or changed ones are due now,
    /// deleted ones go (and whoever waits on them hears so).
    async fn reload(&mut self) -> Result<(), DataStoreError> {
        let stored = self.ds.relationships().await?;
        let now = Instant::now();
        let mut next = BTreeMap::new();
        for rel in stored {
            let td = rel.trust_domain.clone();
            let peer = match self.peers.remove(&td) {
                Some(mut p) if p.relationship == rel => {
                    p.relationship = rel;
                    p
                }
                Some(mut p) => {
                    // Another endpoint or profile: fetch it afresh.
                    p.relationship = rel;
                    p.next = now;
                    p.failures = 0;
                    p
                }
                None => Peer {
                    relationship: rel,
                    next: now,
                    failures: 0,
                    hint: None,
                    fetching: false,
                },
            };
            next.insert(td, peer);
        }
        for td in self.peers.keys() {
            for reply in self.waiting.remove(td).unwrap_or_default() {
                let _ = reply.send(Err(RefreshError::NoRelationship(td.clone())));
            }
        }
        self.peers = next;
        Ok(())
    }

    fn asked(&mut self, td: TrustDomain, reply: Reply) {
        let Some(peer) = self.peers.get_mut(&td) else {
            let _ = reply.send(Err(RefreshError::NoRelationship(td)));
            return;
        };
        peer.next = Instant::now();
        self.waiting.entry(td).or_default().push(reply);
        self.start_due();
    }

    fn start_due(&mut self) {
        let now = Instant::now();
        for peer in self.peers.values_mut() {
            if peer.fetching || peer.next > now {
                continue;
            }
            peer.fetching = true;
            let fetcher = Fetcher {
                ds: self.ds.clone(),
                ca: self.ca.clone(),
                relationship: peer.relationship.clone(),
            };
            let done = self.done_tx.clone();
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let outcome = fetcher.fetch_and_store().await;
                // Counted as soon as stored, so a refresh `federation show`
                // reports is already in the metrics.
                let td = fetcher.relationship.trust_domain.as_str();
                match &outcome {
                    Ok(stored) if stored.changed => metrics.federation_refresh(td, "ok"),
                    Ok(_) => metrics.federation_refresh(td, "unchanged"),
                    Err(e) => metrics.federation_refresh(td, e.kind()),
                }
                let _ = done.send(Done {
                    td: fetcher.relationship.trust_domain.clone(),
                    url: fetcher.relationship.bundle_endpoint_url.clone(),
                    outcome,
                });
            });
        }
    }

    /// Audits a refresh that took a new bundle or was refused (unchanged
    /// ones are only counted); written in the background.
    fn record(&self, td: &TrustDomain, endpoint: &str, sequence: u64, outcome: Outcome) {
        let audit = self.audit.clone();
        let decision = Decision::FederationRefresh {
            trust_domain: td.to_string(),
            endpoint: endpoint.to_owned(),
            sequence,
            outcome,
        };
        tokio::spawn(async move { audit.append(decision).await });
    }

    fn finished(&mut self, done: Done) {
        let td = done.td;
        let waiting = self.waiting.remove(&td).unwrap_or_default();
        let result = match done.outcome {
            Ok(stored) => {
                if stored.changed {
                    tracing::info!(trust_domain = %td, sequence = stored.record.bundle.sequence, "federated bundle refreshed");
                    self.record(&td, &done.url, stored.record.bundle.sequence, Outcome::Ok);
                }
                if let Some(peer) = self.peers.get_mut(&td) {
                    peer.fetching = false;
                    peer.failures = 0;
                    peer.hint = stored.hint;
                    peer.next = Instant::now() + self.bounds.after_success(stored.hint);
                }
                Ok(stored.record)
            }
            Err(e) => {
                let reason = format!("{}: {e}", e.kind());
                self.record(&td, &done.url, 0, Outcome::Refused { reason });
                if let Some(peer) = self.peers.get_mut(&td) {
                    peer.fetching = false;
                    peer.failures = peer.failures.saturating_add(1);
                    let wait = self.bounds.after_failure(peer.failures, peer.hint);
                    peer.next = Instant::now() + wait;
                    tracing::warn!(
                        trust_domain = %td,
                        endpoint = %done.url,
                        refusal = e.kind(),
                        error = %e,
                        retry_in_ms = wait.as_millis() as u64,
                        "federated bundle refresh refused; keeping the bundle held"
                    );
                }
                Err(RefreshError::Fetch(e))
            }
        };
        for reply in waiting {
            let _ = reply.send(result.clone());
        }
    }
}

/// One fetch of one relationship, and its storing.
struct Fetcher {
    ds: Arc<dyn DataStore>,
    ca: Arc<CertificateAuthority>,
    relationship: RelationshipRecord,
}

impl Fetcher {
    /// Fetches and stores, then records the attempt with its outcome (a
    /// refusal by the store, e.g. an older sequence, is the error shown).
    async fn fetch_and_store(&self) -> Result<Stored, FetchError> {
        let now = unix_seconds(self.ca.now());
        let outcome = self.store(now).await;
        let error = outcome.as_ref().err().map(ToString::to_string);
        let td = &self.relationship.trust_domain;
        if let Err(e) = self
            .ds
            .record_fetch(td, now, error.as_deref().unwrap_or(""))
            .await
        {
            tracing::debug!(error = %e, "recording the fetch failed");
        }
        outcome
    }

    async fn store(&self, now: i64) -> Result<Stored, FetchError> {
        let td = &self.relationship.trust_domain;
        let parsed = self.fetch().await?;
        let offered = FederatedBundleRecord {
            bundle: parsed.bundle,
            source: BundleSource::Endpoint,
            updated_at: now,
        };
        let stored = match self.ds.set_federated_bundle(offered.clone(), true).await {
            Ok(stored) => stored,
            Err(DataStoreError::FailedPrecondition(_)) => {
                let held = self.ds.federated_bundle(td).await.ok().flatten();
                return Err(FetchError::OlderSequence {
                    trust_domain: td.clone(),
                    offered: offered.bundle.sequence,
                    held: held.map_or(0, |h| h.bundle.sequence),
                });
            }
            Err(other) => return Err(FetchError::Store(other.to_string())),
        };
        // The same document again returns the record stored before.
        let changed = stored == offered;
        Ok(Stored {
            record: stored,
            hint: parsed.refresh_hint,
            changed,
        })
    }

    async fn fetch(&self) -> Result<signet_core::bundle::ParsedBundle, FetchError> {
        let rel = &self.relationship;
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match &rel.profile {
            EndpointProfile::HttpsSpiffe { endpoint_id } => {
                let endpoint_td = endpoint_id.trust_domain();
                let anchors = if endpoint_td == self.ca.trust_domain() {
                    self.ca.bundle().x509_authorities
                } else {
                    self.ds
                        .federated_bundle(endpoint_td)
                        .await
                        .map_err(|e| FetchError::Store(e.to_string()))?
                        .ok_or_else(|| FetchError::NoEndpointBundle(endpoint_td.clone()))?
                        .bundle
                        .x509_authorities
                };
                SpiffeEndpoint::new(endpoint_id.clone(), anchors)
            }
            EndpointProfile::HttpsWeb { ca_bundle } => web_pki(ca_bundle.as_deref())
                .await
                .map_err(|reason| FetchError::Tls {
                    endpoint: rel.bundle_endpoint_url.clone(),
                    reason,
                })?,
        };
        fetch(&rel.bundle_endpoint_url, &rel.trust_domain, verifier).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_hint_is_kept_within_the_bounds_and_failures_back_off_to_it() {
        let b = RefreshBounds {
            min: Duration::from_secs(1),
            max: Duration::from_secs(600),
        };
        assert_eq!(b.after_success(Some(5)), Duration::from_secs(5));
        assert_eq!(b.after_success(Some(0)), Duration::from_secs(1));
        assert_eq!(b.after_success(Some(86_400)), Duration::from_secs(600));
        assert_eq!(b.after_success(None), Duration::from_secs(300));
        let waits: Vec<u64> = (1..=6)
            .map(|n| b.after_failure(n, Some(20)).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 20]);
        assert_eq!(b.after_failure(u32::MAX, None), Duration::from_secs(300));
    }
}
