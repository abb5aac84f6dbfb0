//! FetchJWTBundles: a plain JWKS of `jwt-svid` keys per trust domain, keyed
//! by `spiffe://<td>`, re-sent whenever the keys change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use signet_core::bundle::jwt_jwks;
use signet_core::jwt::JwtPublicKey;
use signet_core::Selector;
use signet_proto::workload::JwtBundlesResponse;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::stream::stream_state;
use crate::cache::Snapshot;

/// `None` when the caller has no identity.
pub fn jwt_bundles_state(
    snapshot: &Snapshot,
    selectors: &HashSet<Selector>,
) -> Option<JwtBundlesResponse> {
    snapshot.matching(selectors).next()?;
    let mut bundles = HashMap::new();
    for (td, keys) in snapshot.jwt_bundles.iter() {
        let mut keys: Vec<(String, JwtPublicKey)> =
            keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        match serde_json::to_vec(&jwt_jwks(&keys)) {
            Ok(doc) => {
                bundles.insert(td.id_string(), doc);
            }
            Err(e) => tracing::error!(trust_domain = %td, error = %e, "cannot encode JWT bundle"),
        }
    }
    Some(JwtBundlesResponse { bundles })
}

pub async fn stream_jwt_bundles(
    cache: watch::Receiver<Arc<Snapshot>>,
    selectors: HashSet<Selector>,
    tx: mpsc::Sender<Result<JwtBundlesResponse, Status>>,
    sent: Option<JwtBundlesResponse>,
) {
    stream_state(cache, selectors, tx, jwt_bundles_state, sent).await
}
