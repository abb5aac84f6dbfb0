//! FetchX509Bundles: the trust domain's CA certificates keyed by
//! `spiffe://<td>`, re-sent whenever the bundle changes.

use std::collections::HashSet;
use std::sync::Arc;

use signet_core::Selector;
use signet_proto::workload::X509BundlesResponse;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::stream::stream_state;
use crate::cache::Snapshot;

/// `None` when the caller has no identity.
pub fn bundles_state(
    snapshot: &Snapshot,
    selectors: &HashSet<Selector>,
) -> Option<X509BundlesResponse> {
    snapshot.matching(selectors).next()?;
    let bundle = snapshot.bundle.as_deref()?.concat();
    Some(X509BundlesResponse {
        crl: snapshot.crls.to_vec(),
        bundles: [(snapshot.trust_domain.id_string(), bundle)].into(),
    })
}

pub async fn stream_bundles(
    cache: watch::Receiver<Arc<Snapshot>>,
    selectors: HashSet<Selector>,
    tx: mpsc::Sender<Result<X509BundlesResponse, Status>>,
    sent: Option<X509BundlesResponse>,
) {
    stream_state(cache, selectors, tx, bundles_state, sent).await
}
