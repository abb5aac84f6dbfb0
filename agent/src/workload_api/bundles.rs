//! FetchX509Bundles: the trust domain's CA certificates keyed by
//! `spiffe://<td>`, re-sent whenever the bundle changes.

use std::collections::HashSet;
use std::sync::Arc;

use signet_core::Selector;
use signet_proto::workload::X509BundlesResponse;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::x509::no_identity;
use crate::cache::Snapshot;

/// `None` when the caller has no identity.
pub fn bundles_state(
    snapshot: &Snapshot,
    selectors: &HashSet<Selector>,
) -> Option<X509BundlesResponse> {
    snapshot.matching(selectors).next()?;
    let bundle = snapshot.bundle.as_deref()?.concat();
    Some(X509BundlesResponse {
        crl: vec![],
        bundles: [(snapshot.trust_domain.id_string(), bundle)].into(),
    })
}

pub async fn stream_bundles(
    mut cache: watch::Receiver<Arc<Snapshot>>,
    selectors: HashSet<Selector>,
    tx: mpsc::Sender<Result<X509BundlesResponse, Status>>,
) {
    let mut last: Option<X509BundlesResponse> = None;
    loop {
        let snapshot = cache.borrow_and_update().clone();
        match bundles_state(&snapshot, &selectors) {
            None => {
                let _ = tx.send(Err(no_identity())).await;
                return;
            }
            Some(response) => {
                if last.as_ref() != Some(&response) {
                    if tx.send(Ok(response.clone())).await.is_err() {
                        return;
                    }
                    last = Some(response);
                }
            }
        }
        tokio::select! {
            changed = cache.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}
