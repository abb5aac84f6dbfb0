//! The one task that moves the bus forward: it hears of each batch of events
//! this process commits and sends them on in revision order; for anything it
//! did not hear of (a batch whose committer was cancelled before telling, a
//! burst it lagged behind on) it reads the log. It alone advances the bus's
//! revision, so events go out in order, each once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};

use super::{Event, Shared};
use crate::datastore::EventLog;

/// Events read from the log per query while catching up.
const CATCH_UP_BATCH: usize = 4096;

/// How long to wait before reading the log again after it failed.
const RETRY: Duration = Duration::from_millis(200);

pub(super) async fn run(
    shared: Shared,
    log: Arc<dyn EventLog>,
    mut commits: broadcast::Receiver<Arc<[Arc<Event>]>>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let heard = tokio::select! {
            _ = &mut stopped => return,
            heard = commits.recv() => heard,
        };
        match heard {
            Ok(batch) => {
                let Some(first) = batch.first() else { continue };
                // Commit order is revision order: anything before this
                // batch that we have not sent is in the log already.
                if first.revision > shared.revision() + 1
                    && !catch_up(&shared, log.as_ref(), first.revision - 1, &mut stopped).await
                {
                    return;
                }
                shared.push(batch.iter());
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if !catch_up(&shared, log.as_ref(), u64::MAX, &mut stopped).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Sends what the log holds after the bus's revision, up to `upto`;
/// retries while the log cannot be read. False when the bus is gone.
async fn catch_up(
    shared: &Shared,
    log: &dyn EventLog,
    upto: u64,
    stopped: &mut oneshot::Receiver<()>,
) -> bool {
    loop {
        let last = shared.revision();
        if last >= upto {
            return true;
        }
        let read = tokio::select! {
            _ = &mut *stopped => return false,
            read = log.events_after(last, CATCH_UP_BATCH) => read,
        };
        match read {
            Ok(events) => {
                let done = events.len() < CATCH_UP_BATCH;
                shared.push(events.iter().filter(|e| e.revision <= upto));
                if done {
                    return true;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, after = last, "reading the event log; retrying");
                tokio::select! {
                    _ = &mut *stopped => return false,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}
