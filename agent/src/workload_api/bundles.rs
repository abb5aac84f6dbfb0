//! FetchX509Bundles: the CA certificates of the own trust domain and of the
//! trust domains the caller's entries federate with, each keyed by
//! `spiffe://<td>`, re-sent whenever one of them changes.

use std::collections::HashSet;
use std::sync::Arc;

use signet_core::Selector;
use signet_proto::workload::X509BundlesResponse;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::federation;
use super::stream::stream_state;
use crate::cache::Snapshot;

/// `None` when the caller has no identity.
pub fn bundles_state(
    snapshot: &Snapshot,
    selectors: &HashSet<Selector>,
) -> Option<X509BundlesResponse> {
    snapshot.matching(selectors).next()?;
    let own = snapshot.bundle.as_deref()?.concat();
    let federated =
        federation::trust_domains(snapshot.matching(selectors).map(|c| c.entry.as_ref()));
    // The own trust domain last: nothing held for a peer can take its key.
    let mut bundles = federation::x509_bundles(snapshot, &federated);
    bundles.insert(snapshot.trust_domain.id_string(), own);
    Some(X509BundlesResponse {
        crl: snapshot.crls.to_vec(),
        bundles,
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
