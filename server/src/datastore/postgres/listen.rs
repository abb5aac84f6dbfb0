//! Hears the other servers' commits: `LISTEN` wakes it with the revision a
//! commit reached, and it reads what it has not seen (`WHERE id > last`)
//! and sends it on the same channel as this server's own commits, so the
//! change bus tails every server alike. After a lost connection, and every
//! few seconds in case a notice was missed, it reads the log anyway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::broadcast;

use super::events::{current_revision, events_after};
use super::CHANNEL;
use crate::datastore::Result;
use crate::events::Event;

/// Events read per query while catching up.
const BATCH: usize = 4096;
/// How often the log is checked without a notice.
const POLL: Duration = Duration::from_secs(5);
/// How long to wait before connecting again after a failure.
const RETRY: Duration = Duration::from_secs(1);

pub(super) async fn run(
    pool: PgPool,
    commits: broadcast::Sender<Arc<[Arc<Event>]>>,
    known: Arc<AtomicU64>,
) {
    loop {
        if pool.is_closed() {
            return;
        }
        match listen(&pool, &commits, &known).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "listening for other servers' commits; reconnecting");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Listens until the pool is closed (`Ok`) or the connection fails.
async fn listen(
    pool: &PgPool,
    commits: &broadcast::Sender<Arc<[Arc<Event>]>>,
    known: &AtomicU64,
) -> Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Anything committed while not listening.
    catch_up(pool, commits, known).await?;
    loop {
        match tokio::time::timeout(POLL, listener.try_recv()).await {
            Ok(Ok(Some(notice))) => {
                let heard: u64 = notice.payload().parse().unwrap_or(u64::MAX);
                if heard > known.load(Ordering::Acquire) {
                    catch_up(pool, commits, known).await?;
                }
            }
            // The connection was lost and made again: notices may be lost.
            Ok(Ok(None)) => catch_up(pool, commits, known).await?,
            Ok(Err(sqlx::Error::PoolClosed)) => return Ok(()),
            Ok(Err(e)) => return Err(e.into()),
            Err(_quiet) => {
                if current_revision(pool).await? > known.load(Ordering::Acquire) {
                    catch_up(pool, commits, known).await?;
                }
            }
        }
    }
}

/// Sends every event after `known`, in batches, in order.
async fn catch_up(
    pool: &PgPool,
    commits: &broadcast::Sender<Arc<[Arc<Event>]>>,
    known: &AtomicU64,
) -> Result<()> {
    loop {
        let after = known.load(Ordering::Acquire);
        let events = events_after(pool, after, BATCH).await?;
        let Some(last) = events.last().map(|e| e.revision) else {
            return Ok(());
        };
        let full = events.len() == BATCH;
        known.fetch_max(last, Ordering::AcqRel);
        // No tailer yet is fine: it starts from the log's revision.
        let _ = commits.send(events.into());
        if !full {
            return Ok(());
        }
    }
}
