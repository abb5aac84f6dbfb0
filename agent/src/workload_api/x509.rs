//! FetchX509SVID: the caller's full current X.509 state (its SVIDs, the
//! CRLs and the bundles of the trust domains their entries federate with),
//! sent at once and again on every change that affects it, a peer's CA
//! rotation included; never an expired SVID; "no identity
//! issued" when the caller has (or loses) all its entries, when the last of
//! its SVIDs expires unrenewed (server unreachable), or when none has been
//! issued within a short grace.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_core::rotation::wait_until;
use signet_core::{Clock, RegistrationEntry, Selector};
use signet_proto::workload::{X509svid, X509svidResponse};
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::federation;
use crate::cache::{Snapshot, Svid};

/// How long a new caller whose entries have no SVID yet waits for one to be
/// issued before being told it has none.
pub const ISSUE_GRACE: Duration = Duration::from_secs(3);

pub use super::status::no_identity;

/// What the caller should see right now.
#[derive(Debug, PartialEq)]
pub enum X509State {
    /// No entry matches: PermissionDenied.
    NoIdentity,
    /// Entries match but none has a valid SVID yet: wait.
    Pending,
    Ready(X509svidResponse),
}

/// The caller's identities right now: `None` when no entry matches;
/// otherwise each entry's valid SVID, in the deterministic order whose
/// first is the default identity, one per hint.
pub fn identities<'a>(
    snapshot: &'a Snapshot,
    selectors: &'a HashSet<Selector>,
    now: SystemTime,
) -> Option<Vec<(&'a RegistrationEntry, &'a Svid)>> {
    let mut matched = 0usize;
    let mut svids: Vec<(&RegistrationEntry, &Svid)> = Vec::new();
    for cached in snapshot.matching(selectors) {
        matched += 1;
        if let Some(svid) = cached.svid.as_deref().filter(|s| s.is_valid_at(now)) {
            svids.push((&cached.entry, svid));
        }
    }
    if matched == 0 {
        return None;
    }
    svids.sort_by(|a, b| (&a.0.spiffe_id, &a.0.id).cmp(&(&b.0.spiffe_id, &b.0.id)));
    let mut hints = HashSet::new();
    svids.retain(|(e, _)| e.hint.is_empty() || hints.insert(e.hint.as_str()));
    Some(svids)
}

pub fn x509_state(
    snapshot: &Snapshot,
    selectors: &HashSet<Selector>,
    now: SystemTime,
) -> X509State {
    let Some(svids) = identities(snapshot, selectors, now) else {
        return X509State::NoIdentity;
    };
    if svids.is_empty() {
        return X509State::Pending;
    }
    let bundle: Vec<u8> = snapshot
        .bundle
        .as_deref()
        .map(|b| b.concat())
        .unwrap_or_default();
    // Only the entries of the SVIDs served: a bundle is for the identities
    // that trust it.
    let federated = federation::trust_domains(svids.iter().map(|(e, _)| *e));
    let federated_bundles = federation::x509_bundles(snapshot, &federated);
    X509State::Ready(X509svidResponse {
        svids: svids
            .iter()
            .map(|(entry, svid)| X509svid {
                spiffe_id: entry.spiffe_id.to_string(),
                x509_svid: svid.x509.chain.concat(),
                x509_svid_key: svid.key_pkcs8.to_vec(),
                bundle: bundle.clone(),
                hint: entry.hint.clone(),
            })
            .collect(),
        crl: snapshot.crls.to_vec(),
        federated_bundles,
    })
}

/// The earliest expiry among the caller's served SVIDs: the state changes
/// then even if the cache does not.
fn next_expiry(
    snapshot: &Snapshot,
    selectors: &HashSet<Selector>,
    now: SystemTime,
) -> Option<Duration> {
    snapshot
        .matching(selectors)
        .filter_map(|c| c.svid.as_ref())
        .filter(|s| s.is_valid_at(now))
        .map(|s| wait_until(now, s.x509.not_after))
        .min()
}

/// Feeds one caller's stream until it hangs up or loses its identity;
/// `sent` is what the caller was already sent.
pub async fn stream_x509(
    mut cache: watch::Receiver<Arc<Snapshot>>,
    selectors: HashSet<Selector>,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Result<X509svidResponse, Status>>,
    sent: Option<X509svidResponse>,
) {
    let mut last = sent;
    let grace_ends = tokio::time::Instant::now() + ISSUE_GRACE;
    loop {
        let snapshot = cache.borrow_and_update().clone();
        let now = clock.now();
        let mut grace = None;
        match x509_state(&snapshot, &selectors, now) {
            X509State::NoIdentity => {
                let _ = tx.send(Err(no_identity())).await;
                return;
            }
            // Everything it was served has expired (or nothing came in
            // time): withdrawn, with the status SPIFFE clients understand.
            X509State::Pending if last.is_some() || tokio::time::Instant::now() >= grace_ends => {
                let _ = tx.send(Err(no_identity())).await;
                return;
            }
            X509State::Pending => grace = Some(grace_ends),
            X509State::Ready(response) => {
                if last.as_ref() != Some(&response) {
                    if tx.send(Ok(response.clone())).await.is_err() {
                        return;
                    }
                    last = Some(response);
                }
            }
        }
        let expiry = next_expiry(&snapshot, &selectors, now);
        tokio::select! {
            changed = cache.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
            _ = sleep_opt(expiry) => {}
            _ = sleep_until_opt(grace) => {}
        }
    }
}

pub(super) async fn sleep_opt(d: Option<Duration>) {
    match d {
        // A little past notAfter so the SVID counts as expired on wake-up.
        Some(d) => tokio::time::sleep(d + Duration::from_millis(1)).await,
        None => std::future::pending().await,
    }
}

pub(super) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
