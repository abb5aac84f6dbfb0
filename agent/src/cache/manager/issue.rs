//! Issuing the SVIDs that are due: fresh P-256 keys and CSRs made on the
//! bulk threads, sent in batches of [`BATCH`] with [`IN_FLIGHT`] batches
//! outstanding, so key generation, the server's signing and the checks here
//! overlap and a cold start with thousands of entries keeps every core busy.
//! Rounds are started here and polled by the manager's loop beside its
//! updates; each answer's leaves are parsed and matched to their keys on the
//! bulk threads too, so taking a batch is bookkeeping only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::KeyPair;
use signet_core::clock::Clock;
use signet_core::rotation::{refresh_at_prefetch, wait_until};
use signet_core::x509::{build_csr, check_issued_leaf, validate_x509_svid, IssuedLeaf};
use signet_core::{SpiffeId, X509Svid};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::CacheManager;
use crate::cache::state::{EntryId, Svid};
use crate::cache::{authority_id, issuing_authority, SignError, SignRequest, SvidSigner};

/// CSRs per `BatchSignX509Svid` call: enough to amortize a round trip, few
/// enough that the first SVIDs arrive early and messages stay small.
const BATCH: usize = 128;
/// Batches outstanding at once: 8 x 128 kept both cores busier through a
/// 10k-SVID cold start than 4 x 256 (~940 vs ~1000 ms in signet-bench).
pub(super) const IN_FLIGHT: usize = 8;
/// A bound on one signing round trip, so a hung server does not stall
/// entry deletions queued behind it for long.
const SIGN_TIMEOUT: Duration = Duration::from_secs(10);

/// What came back for one batch.
pub(super) struct Signed {
    /// The launch it was asked in.
    launch: u64,
    /// The entries a CSR was sent for.
    asked: Vec<EntryId>,
    /// Entries whose key or CSR could not be made.
    unprepared: Vec<(EntryId, SignError)>,
    results: Result<Vec<Checked>, SignError>,
}

/// One answer, checked off the runtime: the leaf follows the SPIFFE rules,
/// is valid now and certifies the key made for it.
pub(super) struct Checked {
    /// As the server names it.
    entry_id: String,
    issued: Result<Issued, SignError>,
}

pub(super) struct Issued {
    chain: Vec<Vec<u8>>,
    /// As the server names it; empty if it did not.
    authority_id: String,
    leaf: IssuedLeaf,
    key_pkcs8: Zeroizing<Vec<u8>>,
    received: SystemTime,
}

impl CacheManager {
    /// Starts signing rounds for the entries that are due and not already
    /// awaited, while fewer than [`IN_FLIGHT`] are under way. Never waits.
    pub(super) fn start_due(&mut self) {
        if !self.may_start_round() {
            return;
        }
        let now = Instant::now();
        let mut started = 0usize;
        while self.rounds.len() < IN_FLIGHT {
            let mut batch: Vec<(EntryId, SpiffeId)> = Vec::with_capacity(BATCH);
            // Longest overdue first.
            while batch.len() < BATCH {
                let Some(id) = self.due.pop_due(now) else {
                    break;
                };
                // One awaited already gets its next due time from the answer.
                if self.awaited.contains_key(&id) {
                    continue;
                }
                if let Some(entry) = self.entries.get(&*id) {
                    batch.push((id, entry.spiffe_id.clone()));
                }
            }
            if batch.is_empty() {
                break;
            }
            self.launches += 1;
            for (id, _) in &batch {
                self.awaited.insert(id.clone(), self.launches);
            }
            started += batch.len();
            self.rounds.push(Box::pin(sign_batch(
                self.signer.clone(),
                self.clock.clone(),
                batch,
                self.launches,
            )));
        }
        if started > 0 {
            tracing::debug!(count = started, "requesting SVIDs");
        }
    }

    /// Whether a signing round may start now: not cut off, a bundle to
    /// check answers against, and fewer than [`IN_FLIGHT`] under way.
    pub(super) fn may_start_round(&self) -> bool {
        !self.cut_off && self.bundle.is_some() && self.rounds.len() < IN_FLIGHT
    }

    /// Accepts what a batch brought, for the entries still awaiting this
    /// launch (not removed, changed or cut off meanwhile).
    pub(super) fn take(&mut self, batch: Signed) {
        let Signed {
            launch,
            mut asked,
            unprepared,
            results,
        } = batch;
        let current = |id: &str, awaited: &mut HashMap<EntryId, u64>| {
            let mine = awaited.get(id) == Some(&launch);
            if mine {
                awaited.remove(id);
            }
            mine
        };
        for (id, e) in unprepared {
            if current(&id, &mut self.awaited) {
                self.retry_later(&id, &e);
            }
        }
        asked.retain(|id| current(id, &mut self.awaited));
        let Some(bundle) = self.bundle.clone() else {
            return;
        };
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                self.retry_all(asked, &e);
                return;
            }
        };
        let mut waiting: HashSet<EntryId> = asked.into_iter().collect();
        // Each SVID holds its authority's id from this set: one copy each.
        let known: HashSet<Arc<str>> = bundle.iter().map(|ca| authority_id(ca).into()).collect();
        let mut taken = 0;
        for Checked { entry_id, issued } in results {
            let Some(entry_id) = waiting.take(entry_id.as_str()) else {
                continue;
            };
            // An SVID that fails our checks is the server's fault, not the
            // link's: asked for again, but not at once.
            let accepted = issued.and_then(|issued| {
                self.accept(&entry_id, issued, &bundle, &known)
                    .map_err(SignError::Terminal)
            });
            match accepted {
                Ok(()) => taken += 1,
                Err(e) => self.retry_later(&entry_id, &e),
            }
        }
        // Items the server did not answer are retried too.
        let unanswered = SignError::Retryable("no result from server".into());
        self.retry_all(waiting.into_iter().collect(), &unanswered);
        if taken > 0 {
            tracing::info!(count = taken, "SVIDs issued");
        }
        if self.rounds.is_empty() {
            // A cold start's bookkeeping is not kept at its high-water mark.
            self.awaited.shrink_to_fit();
            self.due.shrink_to_fit();
        }
    }

    fn accept(
        &mut self,
        id: &EntryId,
        issued: Issued,
        bundle: &[Vec<u8>],
        known: &HashSet<Arc<str>>,
    ) -> Result<(), String> {
        let entry = self.entries.get(&**id).ok_or("entry is gone")?;
        let Issued {
            chain,
            authority_id,
            leaf: facts,
            key_pkcs8,
            received,
        } = issued;
        if facts.spiffe_id != entry.spiffe_id {
            return Err(format!(
                "SVID is for {}, entry is {}",
                facts.spiffe_id, entry.spiffe_id
            ));
        }
        // A CA of our bundle, as the server names it; otherwise the chain
        // must prove which one, the slow way.
        let authority_id: Arc<str> = match known.get(authority_id.as_str()) {
            Some(shared) => shared.clone(),
            None => {
                validate_x509_svid(&chain, bundle, received).map_err(|e| e.to_string())?;
                let id = issuing_authority(&chain, bundle, received).unwrap_or_default();
                known.get(id.as_str()).cloned().unwrap_or_else(|| id.into())
            }
        };
        // Asked before a taint or revocation that has arrived since: served
        // (it is valid) but asked for again, with backoff.
        let stale = self.tainted.x509.contains(&*authority_id)
            || self
                .revocations
                .is_serial_revoked(&facts.serial_hex, received);
        let refresh =
            refresh_at_prefetch(received, facts.not_after, (self.jitter)(), self.prefetch);
        let now = Instant::now();
        tracing::debug!(entry_id = &**id, spiffe_id = %facts.spiffe_id, serial = facts.serial_hex, authority_id = &*authority_id, not_after = signet_core::clock::unix_seconds(facts.not_after), "SVID issued");
        self.due.set(id, now + wait_until(received, refresh));
        let svid = Arc::new(Svid {
            x509: X509Svid {
                // The entry's (equal, checked above): one copy for both.
                spiffe_id: entry.spiffe_id.clone(),
                chain,
                not_after: facts.not_after,
                authority_id,
                serial_hex: facts.serial_hex,
            },
            key_pkcs8,
        });
        self.hold(id, svid, now + wait_until(received, facts.not_after));
        self.retries.remove(&**id);
        if stale {
            let why = "issued by a tainted authority or with a revoked serial";
            self.retry_later(id, &SignError::Retryable(why.into()));
        }
        self.dirty = true;
        Ok(())
    }
}

/// Makes the keys and CSRs of `batch` off the async workers, has them
/// signed, and checks the answers off the async workers too.
async fn sign_batch(
    signer: Arc<dyn SvidSigner>,
    clock: Arc<dyn Clock>,
    batch: Vec<(EntryId, SpiffeId)>,
    launch: u64,
) -> Signed {
    let ids: Vec<EntryId> = batch.iter().map(|(id, _)| id.clone()).collect();
    let make = move || {
        batch
            .into_iter()
            .map(|(id, spiffe_id)| {
                let made = KeyPair::generate()
                    .map_err(|e| SignError::Retryable(format!("making a key: {e}")))
                    .and_then(|k| {
                        build_csr(&k, &spiffe_id)
                            .map(|csr| (k, csr))
                            .map_err(|e| SignError::Retryable(format!("making a CSR: {e}")))
                    });
                (id, made)
            })
            .collect::<Vec<_>>()
    };
    let prepared = match off_runtime(make).await {
        Ok(p) => p,
        Err(e) => {
            let why = SignError::Retryable(format!("making keys failed: {e}"));
            return Signed {
                launch,
                asked: Vec::new(),
                unprepared: ids.into_iter().map(|id| (id, why.clone())).collect(),
                results: Ok(vec![]),
            };
        }
    };
    let mut keys = HashMap::new();
    let mut unprepared = Vec::new();
    let mut requests = Vec::new();
    for (id, made) in prepared {
        match made {
            Ok((key, csr)) => {
                requests.push(SignRequest {
                    entry_id: id.to_string(),
                    csr,
                });
                keys.insert(id, key);
            }
            Err(e) => unprepared.push((id, e)),
        }
    }
    let asked: Vec<EntryId> = keys.keys().cloned().collect();
    let results = if requests.is_empty() {
        Ok(vec![])
    } else {
        match tokio::time::timeout(SIGN_TIMEOUT, signer.batch_sign(requests)).await {
            Ok(Ok(answers)) => {
                let check = move || {
                    let received = clock.now();
                    answers
                        .into_iter()
                        .filter_map(|answer| {
                            let key = keys.remove(answer.entry_id.as_str())?;
                            let issued = answer.chain.and_then(|chain| {
                                check_answer(chain, answer.authority_id, &key, received)
                                    .map_err(SignError::Terminal)
                            });
                            Some(Checked {
                                entry_id: answer.entry_id,
                                issued,
                            })
                        })
                        .collect::<Vec<_>>()
                };
                off_runtime(check).await.map_err(|e| {
                    SignError::Retryable(format!("checking the signed SVIDs failed: {e}"))
                })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SignError::Retryable(format!(
                "no answer within {} s",
                SIGN_TIMEOUT.as_secs()
            ))),
        }
    };
    Signed {
        launch,
        asked,
        unprepared,
        results,
    }
}

/// The leaf of `chain` follows the SPIFFE rules, is valid at `received` and
/// certifies `key`.
fn check_answer(
    mut chain: Vec<Vec<u8>>,
    authority_id: String,
    key: &KeyPair,
    received: SystemTime,
) -> Result<Issued, String> {
    // Held until rotation: not at the decoder's capacity of four.
    chain.shrink_to_fit();
    let leaf = chain.first().ok_or("empty chain")?;
    let leaf =
        check_issued_leaf(leaf, key.public_key_raw(), received).map_err(|e| e.to_string())?;
    Ok(Issued {
        chain,
        authority_id,
        leaf,
        key_pkcs8: Zeroizing::new(key.serialize_der()),
        received,
    })
}

/// Runs `work` on the bulk threads (one per core, below the daemon's
/// priority), so eight rounds' keys and checks neither outnumber the cores
/// nor delay the async workers that carry a ban or a deletion. Inline on a
/// current-thread runtime (tests on a paused clock): it has no other worker
/// to keep free, and a wait on another thread would let a paused clock jump.
async fn off_runtime<T, F>(work: F) -> Result<T, signet_runtime::bulk::BulkError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => Ok(work()),
        _ => signet_runtime::bulk::run(work).await,
    }
}
