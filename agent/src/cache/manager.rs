//! The rotation task: applies sync updates, issues an SVID (fresh P-256 key,
//! CSR, batched `BatchSignX509Svid`) for every entry that needs one, renews
//! each at half-life ±10% jitter counted from when it was received, re-issues
//! at once an SVID whose authority is tainted or whose serial is revoked,
//! retries failures with backoff, drops deleted or expired SVIDs at once (and
//! everything when the agent is cut off), and publishes an immutable snapshot
//! after every change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rcgen::KeyPair;
use signet_core::jwt::{JwtBundles, JwtPublicKey};
use signet_core::rotation::{refresh_at, wait_until};
use signet_core::x509::{build_csr, cert_info, key_matches_leaf, validate_x509_svid};
use signet_core::{Clock, RegistrationEntry, TrustDomain};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::state::{CachedEntry, Revocations, Snapshot, Svid, Tainted};
use super::{issuing_authority, SignRequest, SvidSigner};
use crate::backoff::Backoff;

/// A bound on one signing round trip, so a hung server does not stall
/// entry deletions queued behind it for long.
const SIGN_TIMEOUT: Duration = Duration::from_secs(10);

/// One message of the sync stream, already parsed.
#[derive(Debug, Clone, Default)]
pub struct SyncUpdate {
    /// `entries` is the complete set; forget anything else.
    pub snapshot: bool,
    pub entries: Vec<RegistrationEntry>,
    pub removed_entry_ids: Vec<String>,
    /// DER CA certificates, when the bundle changed.
    pub bundle: Option<Vec<Vec<u8>>>,
    /// The trust domain's JWT keys (kid, key), whenever a bundle came.
    pub jwt_keys: Option<Vec<(String, JwtPublicKey)>>,
    /// The message's sync revision (0: not from the server).
    pub revision: u64,
    /// Revoked credentials: the complete list in a snapshot, else additions.
    pub revocations: Revocations,
    /// DER CRLs, when they changed.
    pub crls: Option<Vec<Vec<u8>>>,
    /// The complete tainted set, when it changed.
    pub tainted: Option<Tainted>,
    /// The agent was banned or evicted (the reason): drop everything and
    /// issue nothing more.
    pub cut_off: Option<String>,
}

struct Held {
    svid: Arc<Svid>,
    expires: Instant,
}

pub struct CacheManager {
    signer: Arc<dyn SvidSigner>,
    clock: Arc<dyn Clock>,
    jitter: fn() -> f64,
    updates: mpsc::Receiver<SyncUpdate>,
    publish: watch::Sender<Arc<Snapshot>>,
    trust_domain: TrustDomain,
    bundle: Option<Arc<Vec<Vec<u8>>>>,
    jwt_bundles: Arc<JwtBundles>,
    entries: BTreeMap<String, RegistrationEntry>,
    held: HashMap<String, Held>,
    /// When each entry next needs (re)issuing.
    due: HashMap<String, Instant>,
    retries: HashMap<String, Backoff>,
    crls: Arc<Vec<Vec<u8>>>,
    revocations: Revocations,
    tainted: Arc<Tainted>,
    revision: u64,
    cut_off: bool,
    dirty: bool,
}

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
            updates,
            publish,
            trust_domain,
            bundle: None,
            jwt_bundles: Arc::default(),
            entries: BTreeMap::new(),
            held: HashMap::new(),
            due: HashMap::new(),
            retries: HashMap::new(),
            crls: Arc::default(),
            revocations: Revocations::default(),
            tainted: Arc::default(),
            revision: 0,
            cut_off: false,
            dirty: false,
        };
        (manager, rx)
    }

    /// Runs until the sync side hangs up.
    pub async fn run(mut self) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                update = self.updates.recv() => match update {
                    Some(u) => self.apply(u),
                    None => return,
                },
                _ = sleep_until(wake) => {}
            }
            if self.revocations.prune(self.clock.now()) {
                self.dirty = true;
            }
            self.drop_expired();
            self.issue_due().await;
            self.publish_if_dirty();
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let due = self.due.values().copied();
        let expiry = self.held.values().map(|h| h.expires);
        due.chain(expiry).min()
    }

    fn apply(&mut self, update: SyncUpdate) {
        if let Some(reason) = update.cut_off {
            self.cut_off(&reason);
            return;
        }
        if self.cut_off {
            return;
        }
        if update.revision != 0 && update.revision != self.revision {
            self.revision = update.revision;
            self.dirty = true;
        }
        if let Some(bundle) = update.bundle {
            self.bundle = Some(Arc::new(bundle));
            self.dirty = true;
        }
        if let Some(keys) = update.jwt_keys {
            let keys: HashMap<String, JwtPublicKey> = keys.into_iter().collect();
            let mut bundles = JwtBundles::new();
            bundles.insert(self.trust_domain.clone(), keys);
            if *self.jwt_bundles != bundles {
                self.jwt_bundles = Arc::new(bundles);
                self.dirty = true;
            }
        }
        if update.snapshot {
            let keep: std::collections::HashSet<&str> =
                update.entries.iter().map(|e| e.id.as_str()).collect();
            let gone: Vec<String> = self
                .entries
                .keys()
                .filter(|id| !keep.contains(id.as_str()))
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
        self.apply_revocations(update.snapshot, update.revocations);
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
            }
        }
        self.mark_for_reissue();
    }

    fn upsert(&mut self, entry: RegistrationEntry) {
        let id = entry.id.clone();
        let reissue = match self.entries.get(&id) {
            None => true,
            Some(old) => {
                old.spiffe_id != entry.spiffe_id
                    || old.dns_names != entry.dns_names
                    || old.x509_svid_ttl != entry.x509_svid_ttl
            }
        };
        if self.entries.get(&id) != Some(&entry) {
            self.dirty = true;
        }
        self.entries.insert(id.clone(), entry);
        if reissue {
            self.held.remove(&id);
            self.retries.remove(&id);
            self.due.insert(id, Instant::now());
        }
    }

    fn remove(&mut self, id: &str) {
        if self.entries.remove(id).is_some() {
            tracing::info!(entry_id = id, "entry removed; its SVID is dropped");
            self.dirty = true;
        }
        self.held.remove(id);
        self.due.remove(id);
        self.retries.remove(id);
    }

    /// Never keep serving an SVID past its notAfter.
    fn drop_expired(&mut self) {
        let now = Instant::now();
        let before = self.held.len();
        self.held.retain(|_, h| h.expires > now);
        if self.held.len() != before {
            self.dirty = true;
        }
    }

    async fn issue_due(&mut self) {
        if self.cut_off {
            return;
        }
        let Some(bundle) = self.bundle.clone() else {
            return;
        };
        let now = Instant::now();
        let due: Vec<String> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let mut keys = HashMap::new();
        let mut requests = Vec::new();
        for id in due {
            let Some(entry) = self.entries.get(&id) else {
                self.due.remove(&id);
                continue;
            };
            let prepared = KeyPair::generate()
                .map_err(|e| e.to_string())
                .and_then(|k| {
                    build_csr(&k, &entry.spiffe_id)
                        .map(|csr| (k, csr))
                        .map_err(|e| e.to_string())
                });
            match prepared {
                Ok((key, csr)) => {
                    requests.push(SignRequest {
                        entry_id: id.clone(),
                        csr,
                    });
                    keys.insert(id, key);
                }
                Err(e) => self.retry_later(&id, &e),
            }
        }
        if requests.is_empty() {
            return;
        }
        tracing::debug!(count = requests.len(), "requesting SVIDs");
        let results =
            match tokio::time::timeout(SIGN_TIMEOUT, self.signer.batch_sign(requests)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    self.retry_all(keys.keys().cloned().collect(), &e);
                    return;
                }
                Err(_) => {
                    self.retry_all(keys.keys().cloned().collect(), "timed out");
                    return;
                }
            };
        for result in results {
            let Some(key) = keys.remove(&result.entry_id) else {
                continue;
            };
            let authority = result.authority_id;
            match result
                .chain
                .and_then(|chain| self.accept(&result.entry_id, chain, authority, &key, &bundle))
            {
                Ok(()) => {}
                Err(e) => self.retry_later(&result.entry_id, &e),
            }
        }
        // Items the server did not answer are retried too.
        self.retry_all(keys.into_keys().collect(), "no result from server");
    }

    fn accept(
        &mut self,
        id: &str,
        chain: Vec<Vec<u8>>,
        authority_id: String,
        key: &KeyPair,
        bundle: &[Vec<u8>],
    ) -> Result<(), String> {
        let entry = self.entries.get(id).ok_or("entry is gone")?;
        let received = self.clock.now();
        let spiffe_id = validate_x509_svid(&chain, bundle, received).map_err(|e| e.to_string())?;
        if spiffe_id != entry.spiffe_id {
            return Err(format!(
                "SVID is for {spiffe_id}, entry is {}",
                entry.spiffe_id
            ));
        }
        let leaf = chain.first().ok_or("empty chain")?;
        let key_pkcs8 = key.serialize_der();
        key_matches_leaf(leaf, &key_pkcs8).map_err(|e| e.to_string())?;
        let info = cert_info(leaf).map_err(|e| e.to_string())?;
        let not_after = info.not_after;
        let authority_id = if authority_id.is_empty() {
            issuing_authority(&chain, bundle, received).unwrap_or_default()
        } else {
            authority_id
        };
        let refresh = refresh_at(received, not_after, (self.jitter)());
        let now = Instant::now();
        tracing::info!(entry_id = id, %spiffe_id, serial = info.serial_hex, authority_id, not_after = signet_core::clock::unix_seconds(not_after), "SVID issued");
        self.due
            .insert(id.to_owned(), now + wait_until(received, refresh));
        self.held.insert(
            id.to_owned(),
            Held {
                svid: Arc::new(Svid {
                    chain,
                    key_pkcs8,
                    not_after,
                    authority_id,
                    serial_hex: info.serial_hex,
                }),
                expires: now + wait_until(received, not_after),
            },
        );
        self.retries.remove(id);
        self.dirty = true;
        Ok(())
    }

    fn retry_all(&mut self, ids: Vec<String>, error: &str) {
        for id in ids {
            self.retry_later(&id, error);
        }
    }

    /// Keeps any still-valid SVID and tries again after a backoff.
    fn retry_later(&mut self, id: &str, error: &str) {
        if !self.entries.contains_key(id) {
            return;
        }
        let delay = self
            .retries
            .entry(id.to_owned())
            .or_insert_with(|| Backoff::new(Duration::from_millis(500), Duration::from_secs(30)))
            .next_delay();
        tracing::warn!(
            entry_id = id,
            error,
            retry_in_ms = delay.as_millis() as u64,
            "SVID request failed"
        );
        self.due.insert(id.to_owned(), Instant::now() + delay);
    }

    fn publish_if_dirty(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let entries = self
            .entries
            .iter()
            .map(|(id, entry)| {
                let cached = CachedEntry {
                    entry: entry.clone(),
                    svid: self.held.get(id).map(|h| h.svid.clone()),
                };
                (id.clone(), cached)
            })
            .collect();
        self.publish.send_replace(Arc::new(Snapshot {
            trust_domain: self.trust_domain.clone(),
            bundle: self.bundle.clone(),
            jwt_bundles: self.jwt_bundles.clone(),
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

#[path = "manager_lifecycle.rs"]
mod lifecycle;

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
