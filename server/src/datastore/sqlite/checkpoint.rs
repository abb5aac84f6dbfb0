//! WAL checkpoints off the writer. SQLite's automatic checkpoint runs inside
//! whichever commit takes the log past 1000 pages, on the one connection
//! every write goes through: after a 10k-entry batch, the next writes (a ban
//! among them) waited 20-40 ms for the copy and its sync. Here a reader
//! connection runs a passive checkpoint, which neither waits for nor blocks
//! the writer or the readers, once per interval.

use std::time::Duration;

use sqlx::SqlitePool;
use tokio::time::MissedTickBehavior;

/// How often the log is copied into the database: it holds at most about
/// this long of writes (a few MB after a large batch).
pub(super) const INTERVAL: Duration = Duration::from_secs(1);

/// Frames in the log and frames copied, as `PRAGMA wal_checkpoint` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checkpointed {
    pub log_frames: i64,
    pub copied_frames: i64,
}

/// One passive checkpoint.
pub(super) async fn once(pool: &SqlitePool) -> sqlx::Result<Checkpointed> {
    let (_busy, log_frames, copied_frames): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(pool)
            .await?;
    Ok(Checkpointed {
        log_frames,
        copied_frames,
    })
}

/// Checkpoints every [`INTERVAL`] until the pool is closed.
pub(super) async fn run(pool: SqlitePool) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        match once(&pool).await {
            Ok(_) => {}
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying"),
        }
    }
}
