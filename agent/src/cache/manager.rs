//! The rotation task: applies sync updates, issues an SVID (fresh P-256 key,
//! CSR, batched `BatchSignX509Svid`) for every entry that needs one, renews
//! each at half-life ±10% jitter counted from when it was received, re-issues
//! at once an SVID whose authority is tainted or whose serial is revoked,
//! retries failures with backoff, drops deleted or expired SVIDs at once (and
//! everything when the agent is cut off), and publishes an immutable snapshot
//! after every change. Signing rounds run as futures inside the task's own
//! `select!`, never awaited in line: a deletion, revocation or ban that
//! arrives during a 10k-entry cold start (or a hung server) takes effect at
//! once, and the round's late answers for it are dropped.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use signet_core::jwt::{JwtBundles, JwtPublicKey};
use signet_core::{Clock, RegistrationEntry, TrustDomain};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::policies::HeldPolicies;
use super::state::{CachedEntry, EntryId, FederatedBundles, Revocations, Snapshot, Svid, Tainted};
use super::{SignError, SvidSigner};
use crate::backoff::Backoff;
use timers::Timers;

/// A signing round under way: resolves to what the server answered.
type Round = Pin<Box<dyn Future<Output = issue::Signed> + Send>>;

pub struct CacheManager {
    signer: Arc<dyn SvidSigner>,
    clock: Arc<dyn Clock>,
    jitter: fn() -> f64,
    /// Renew once less than this is left (`svid_prefetch`).
    prefetch: Option<Duration>,
    updates: mpsc::Receiver<SyncUpdate>,
    publish: watch::Sender<Arc<Snapshot>>,
    trust_domain: TrustDomain,
    bundle: Option<Arc<Vec<Vec<u8>>>>,
    jwt_bundles: Arc<JwtBundles>,
    /// Other trust domains' bundles, each apart from the own one.
    federated: Arc<FederatedBundles>,
    /// Authorization policies and the engine over them.
    policies: Arc<HeldPolicies>,
    /// Its keys are the one copy of each entry id every other map shares.
    entries: BTreeMap<EntryId, Arc<RegistrationEntry>>,
    /// The SVID served for each entry that has one.
    held: HashMap<EntryId, Arc<Svid>>,
    /// When each held SVID expires (its notAfter).
    expiries: Timers,
    /// When each entry next needs (re)issuing; an entry whose SVID is
    /// awaited has none until the answer comes.
    due: Timers,
    retries: HashMap<EntryId, Backoff>,
    /// Signing rounds under way, at most `issue::IN_FLIGHT`.
    rounds: FuturesUnordered<Round>,
    /// Entry id → the launch its SVID is awaited from. Removing, changing
    /// or cutting off an entry forgets it, so a late answer is dropped.
    awaited: HashMap<EntryId, u64>,
    launches: u64,
    crls: Arc<Vec<Vec<u8>>>,
    revocations: Revocations,
    tainted: Arc<Tainted>,
    revision: u64,
    cut_off: bool,
    dirty: bool,
    last_publish: Instant,
    /// New SVIDs of a cold start not yet published (see [`PUBLISH_EVERY`]).
    publish_at: Option<Instant>,
}

/// While signing rounds are under way, what they bring is published at most
/// this often: each snapshot costs O(entries) here and in every reader, and a
/// 10k cold start answers 80 batches. Anything else is published at once.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// When to ask again for an SVID the server refused outright.
const TERMINAL_RETRY: Duration = Duration::from_secs(300);

impl CacheManager {
    /// A manager and the receiver for its snapshots.
    pub fn new(
        trust_domain: TrustDomain,
        signer: Arc<dyn SvidSigner>,
        clock: Arc<dyn Clock>,
        jitter: fn() -> f64,
        updates: mpsc::Receiver<SyncUpdate>,
    ) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let (publish, rx) = watch::channel(Arc::new(Snapshot::empty(trust_domain.clone())));
        let manager = Self {
            signer,
            clock,
            jitter,
            prefetch: None,
            updates,
            publish,
            trust_domain,
            bundle: None,
            jwt_bundles: Arc::default(),
            federated: Arc::default(),
            policies: Arc::default(),
            entries: BTreeMap::new(),
            held: HashMap::new(),
            expiries: Timers::default(),
            due: Timers::default(),
            retries: HashMap::new(),
            rounds: FuturesUnordered::new(),
            awaited: HashMap::new(),
            launches: 0,
            crls: Arc::default(),
            revocations: Revocations::default(),
            tainted: Arc::default(),
            revision: 0,
            cut_off: false,
            dirty: false,
            last_publish: Instant::now(),
            publish_at: None,
        };
        (manager, rx)
    }

    /// Renews each SVID once less than `prefetch` is left, if that comes
    /// before half-life (`svid_prefetch`).
    pub fn with_prefetch(mut self, prefetch: Option<Duration>) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Runs until the sync side hangs up.
    pub async fn run(mut self) {
        loop {
            let wake = self.next_wake();
            let mut signed_only = false;
            tokio::select! {
                update = self.updates.recv() => match update {
                    Some(u) => {
                        self.apply(u);
                        // Whatever else has arrived meanwhile (the other
                        // parts of a snapshot) joins the same issuing round.
                        while let Ok(u) = self.updates.try_recv() {
                            self.apply(u);
                        }
                    }
                    None => return,
                },
                Some(signed) = self.rounds.next(), if !self.rounds.is_empty() => {
                    self.take(signed);
                    signed_only = true;
                }
                _ = sleep_until(wake) => {}
            }
            if self.revocations.prune(self.clock.now()) {
                self.dirty = true;
            }
            let expired = self.drop_expired();
            self.start_due();
            let soon = self.last_publish + PUBLISH_EVERY;
            if signed_only && !expired && !self.rounds.is_empty() && Instant::now() < soon {
                if self.dirty {
                    self.publish_at.get_or_insert(soon);
                }
            } else {
                self.publish_if_dirty();
            }
        }
    }

    /// The next renewal or expiry; renewals only while a round may start
    /// (with every round under way, the next answer wakes the task).
    fn next_wake(&mut self) -> Option<Instant> {
        let soonest = self
            .expiries
            .next()
            .into_iter()
            .chain(self.publish_at)
            .min();
        if !self.may_start_round() {
            return soonest;
        }
        self.due.next().into_iter().chain(soonest).min()
    }

    fn apply(&mut self, update: SyncUpdate) {
        if let Some(reason) = update.cut_off {
            self.cut_off(&reason);
            return;
        }
        if self.cut_off {
            return;
        }
        if update.preview {
            if let Some(bundle) = update.bundle {
                self.set_x509_authorities(bundle.x509_authorities);
            }
            // Added, not replacing: the whole snapshot drops what it lacks.
            self.update_federated(false, update.federated_bundles, vec![]);
            for entry in update.entries {
                self.upsert(entry);
            }
            return;
        }
        if update.revision != 0 && update.revision != self.revision {
            self.revision = update.revision;
            self.dirty = true;
        }
        if let Some(bundle) = update.bundle {
            let keys: HashMap<String, JwtPublicKey> = bundle.jwt_keys().into_iter().collect();
            self.set_x509_authorities(bundle.x509_authorities);
            let mut bundles = JwtBundles::new();
            bundles.insert(self.trust_domain.clone(), keys);
            if *self.jwt_bundles != bundles {
                self.jwt_bundles = Arc::new(bundles);
                self.dirty = true;
            }
        }
        self.update_federated(
            update.snapshot,
            update.federated_bundles,
            update.removed_federated_bundles,
        );
        self.update_policies(
            update.policies_complete,
            update.policies,
            update.removed_policies,
        );
        if update.snapshot {
            let keep: std::collections::HashSet<&str> = update
                .entries
                .iter()
                .map(|e| e.id.as_str())
                .chain(update.previewed.iter().map(String::as_str))
                .collect();
            let gone: Vec<EntryId> = self
                .entries
                .keys()
                .filter(|id| !keep.contains(&***id))
                .cloned()
                .collect();
            for id in gone {
                self.remove(&id);
            }
        }
        for id in update.removed_entry_ids {
            self.remove(&id);
        }
        for entry in update.entries {
            self.upsert(entry);
        }
        // Held SVIDs need checking only when what they are checked against
        // changed (answers arriving later are checked as they come).
        let mut recheck = self.apply_revocations(update.snapshot, update.revocations);
        if let Some(crls) = update.crls {
            if *self.crls != crls {
                tracing::info!(count = crls.len(), "CRLs updated");
                self.crls = Arc::new(crls);
                self.dirty = true;
            }
        }
        if let Some(tainted) = update.tainted {
            if *self.tainted != tainted {
                tracing::info!(x509 = ?tainted.x509, jwt_kids = ?tainted.jwt_kids, "tainted authorities updated");
                self.tainted = Arc::new(tainted);
                self.dirty = true;
                recheck = true;
            }
        }
        if recheck {
            self.mark_for_reissue();
        }
    }

    /// A bundle without X.509 authorities verifies nothing: kept as it was.
    fn set_x509_authorities(&mut self, bundle: Vec<Vec<u8>>) {
        if !bundle.is_empty() && self.bundle.as_deref() != Some(&bundle) {
            self.bundle = Some(Arc::new(bundle));
            self.dirty = true;
        }
    }

    fn upsert(&mut self, entry: RegistrationEntry) {
        // A known entry keeps its id's one allocation.
        let (id, changed, reissue) = match self.entries.get_key_value(entry.id.as_str()) {
            None => (EntryId::from(entry.id.as_str()), true, true),
            Some((id, old)) => {
                let reissue = old.spiffe_id != entry.spiffe_id
                    || old.dns_names != entry.dns_names
                    || old.x509_svid_ttl != entry.x509_svid_ttl;
                (id.clone(), **old != entry, reissue)
            }
        };
        self.dirty |= changed;
        self.entries.insert(id.clone(), Arc::new(entry));
        if reissue {
            self.release(&id);
            self.retries.remove(&id);
            self.awaited.remove(&id);
            self.due.set(&id, Instant::now());
        }
    }

    fn remove(&mut self, id: &str) {
        if self.entries.remove(id).is_some() {
            tracing::info!(entry_id = id, "entry removed; its SVID is dropped");
            self.dirty = true;
        }
        self.release(id);
        self.due.remove(id);
        self.retries.remove(id);
        self.awaited.remove(id);
    }

    /// Serves `svid` for `id` until its notAfter.
    fn hold(&mut self, id: &EntryId, svid: Arc<Svid>, expires: Instant) {
        self.held.insert(id.clone(), svid);
        self.expiries.set(id, expires);
    }

    fn release(&mut self, id: &str) {
        self.held.remove(id);
        self.expiries.remove(id);
    }

    /// Never keep serving an SVID past its notAfter (published at once);
    /// true when one went.
    fn drop_expired(&mut self) -> bool {
        let now = Instant::now();
        let mut dropped = false;
        while let Some(id) = self.expiries.pop_due(now) {
            tracing::warn!(
                entry_id = &*id,
                "SVID expired before it was renewed; no longer served"
            );
            self.held.remove(&id);
            dropped = true;
        }
        if dropped {
            self.dirty = true;
        }
        dropped
    }

    fn retry_all(&mut self, ids: Vec<EntryId>, error: &SignError) {
        for id in ids {
            self.retry_later(&id, error);
        }
    }

    /// Keeps any still-valid SVID and tries again: after a backoff when
    /// the failure may pass, after [`TERMINAL_RETRY`] when the server
    /// refused (an update of the entry through Sync asks again at once).
    fn retry_later(&mut self, id: &EntryId, error: &SignError) {
        if !self.entries.contains_key(id) {
            return;
        }
        let delay = match error {
            SignError::Retryable(_) => self
                .retries
                .entry(id.clone())
                .or_insert_with(|| {
                    Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
                })
                .next_delay(),
            SignError::Terminal(_) => TERMINAL_RETRY,
        };
        tracing::warn!(
            entry_id = &**id,
            error = %error,
            terminal = matches!(error, SignError::Terminal(_)),
            retry_in_ms = delay.as_millis() as u64,
            "SVID request failed"
        );
        self.due.set(id, Instant::now() + delay);
    }

    fn publish_if_dirty(&mut self) {
        self.publish_at = None;
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        self.last_publish = Instant::now();
        let entries = self
            .entries
            .iter()
            .map(|(id, entry)| {
                let cached = CachedEntry {
                    entry: entry.clone(),
                    svid: self.held.get(id).cloned(),
                };
                (id.clone(), cached)
            })
            .collect();
        self.publish.send_replace(Arc::new(Snapshot {
            trust_domain: self.trust_domain.clone(),
            bundle: self.bundle.clone(),
            jwt_bundles: self.jwt_bundles.clone(),
            federated_bundles: self.federated.clone(),
            policies: self.policies.clone(),
            entries,
            crls: self.crls.clone(),
            revocations: Arc::new(self.revocations.clone()),
            tainted: self.tainted.clone(),
            revision: self.revision,
        }));
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

mod federation;
mod issue;
mod lifecycle;
mod policies;
mod timers;
mod update;

pub use update::SyncUpdate;

#[cfg(test)]
mod tests;
