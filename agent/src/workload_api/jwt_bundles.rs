//! FetchJWTBundles: a plain JWKS of `jwt-svid` keys for the own trust domain
//! and for each trust domain the caller's entries federate with, keyed by
//! `spiffe://<td>`, re-sent whenever one of them changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use signet_core::bundle::jwt_jwks;
use signet_core::jwt::JwtPublicKey;
use signet_core::{Selector, TrustDomain};
use signet_proto::workload::JwtBundlesResponse;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::federation;
use super::stream::stream_state;
use crate::cache::Snapshot;

/// `None` when the caller has no identity.
pub fn jwt_bundles_state(
    snapshot: &Snapshot,
    selectors: &HashSet<Selector>,
) -> Option<JwtBundlesResponse> {
    snapshot.matching(selectors).next()?;
    let mut bundles = HashMap::new();
    let federated =
        federation::trust_domains(snapshot.matching(selectors).map(|c| c.entry.as_ref()));
    for bundle in federation::held(snapshot, &federated) {
        let keys = federation::sorted_jwt_keys(bundle);
        insert_jwks(&mut bundles, &bundle.trust_domain, &keys);
    }
    // The own trust domain last: nothing held for a peer can take its key.
    for (td, keys) in snapshot.jwt_bundles.iter() {
        let mut keys: Vec<(String, JwtPublicKey)> =
            keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        insert_jwks(&mut bundles, td, &keys);
    }
    Some(JwtBundlesResponse { bundles })
}

fn insert_jwks(
    bundles: &mut HashMap<String, Vec<u8>>,
    td: &TrustDomain,
    keys: &[(String, JwtPublicKey)],
) {
    match serde_json::to_vec(&jwt_jwks(keys)) {
        Ok(doc) => {
            bundles.insert(td.id_string(), doc);
        }
        Err(e) => tracing::error!(trust_domain = %td, error = %e, "cannot encode JWT bundle"),
    }
}

pub async fn stream_jwt_bundles(
    cache: watch::Receiver<Arc<Snapshot>>,
    selectors: HashSet<Selector>,
    tx: mpsc::Sender<Result<JwtBundlesResponse, Status>>,
    sent: Option<JwtBundlesResponse>,
) {
    stream_state(cache, selectors, tx, jwt_bundles_state, sent).await
}
