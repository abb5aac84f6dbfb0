//! The shape every bundle stream shares: send the caller's full state at
//! once, again whenever the cache changes it, never an unchanged state; end
//! with "no identity issued" when the caller has none.

use std::collections::HashSet;
use std::sync::Arc;

use signet_core::Selector;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::x509::no_identity;
use crate::cache::Snapshot;

/// `state` answers `None` when the caller has no identity.
pub async fn stream_state<T: Clone + PartialEq>(
    mut cache: watch::Receiver<Arc<Snapshot>>,
    selectors: HashSet<Selector>,
    tx: mpsc::Sender<Result<T, Status>>,
    state: fn(&Snapshot, &HashSet<Selector>) -> Option<T>,
) {
    let mut last: Option<T> = None;
    loop {
        let snapshot = cache.borrow_and_update().clone();
        let Some(response) = state(&snapshot, &selectors) else {
            let _ = tx.send(Err(no_identity())).await;
            return;
        };
        if last.as_ref() != Some(&response) {
            if tx.send(Ok(response.clone())).await.is_err() {
                return;
            }
            last = Some(response);
        }
        tokio::select! {
            changed = cache.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}
