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

/// Room for a few messages a slow reader has not taken yet.
const CHANNEL_CAPACITY: usize = 4;

/// One end of a Workload API stream's channel.
pub type StreamTx<T> = mpsc::Sender<Result<T, Status>>;
pub type StreamRx<T> = mpsc::Receiver<Result<T, Status>>;

/// A stream's channel with its first message, if known, already queued:
/// tonic sends it as soon as the RPC returns, without waiting for the
/// stream task to be scheduled (a queue's wait when many callers arrive).
pub fn channel_with_first<T>(first: Option<T>) -> (StreamTx<T>, StreamRx<T>) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    if let Some(first) = first {
        // A new channel has room: this cannot fail.
        let _ = tx.try_send(Ok(first));
    }
    (tx, rx)
}

/// `state` answers `None` when the caller has no identity; `sent` is what
/// the caller was already sent (see `channel_with_first`).
pub async fn stream_state<T: Clone + PartialEq>(
    mut cache: watch::Receiver<Arc<Snapshot>>,
    selectors: HashSet<Selector>,
    tx: mpsc::Sender<Result<T, Status>>,
    state: fn(&Snapshot, &HashSet<Selector>) -> Option<T>,
    sent: Option<T>,
) {
    let mut last = sent;
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
