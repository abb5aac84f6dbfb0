//! The PostgreSQL datastore: any number of servers on one database (HA).
//! One file per store, as for SQLite: `agents`, `entries`, `credentials`,
//! `authorities`, `servers`, `events`; `listen` hears the other servers'
//! commits.
//!
//! Every transaction that writes events first locks the one `revision` row
//! (`event_tx`), so event writers serialize across all servers, commit order
//! is revision order, and checks made inside such a transaction (a duplicate
//! entry) cannot race another server's. Each such commit also sends a
//! `NOTIFY` with its last revision, delivered to every listening server at
//! commit. Other writes (a join token burned, serials recorded) rely on row
//! locks alone.

mod agents;
mod audit;
mod authorities;
mod credentials;
mod entries;
mod events;
mod federation;
mod listen;
mod policies;
mod servers;
mod sightings;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use tokio::sync::broadcast;

use super::recorder::Recorder;
use super::{DataStoreError, Result};
use crate::events::Event;

/// The schema, compiled into the binary.
static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The channel every commit with events notifies, payload its last revision.
const CHANNEL: &str = "signet_events";

/// Commit notices a slow tailer may fall behind by before it reads the log.
const COMMIT_NOTICES: usize = 1024;

/// How the pool connects and behaves; see `open::PostgresSettings`.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a caller waits for a connection (the database down or every
    /// connection busy) before it gets `Unavailable`.
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct PostgresDataStore {
    pool: PgPool,
    /// Group commit of issued serials.
    records: Recorder,
    /// Each batch of events committed here or heard of from another server.
    commits: broadcast::Sender<Arc<[Arc<Event>]>>,
    /// The highest revision sent on `commits`, so the listener does not
    /// read back what this process committed itself.
    known: Arc<AtomicU64>,
}

impl PostgresDataStore {
    /// Connects, applies migrations (several servers starting at once take
    /// turns: the migrator holds an advisory lock) and starts hearing other
    /// servers' commits.
    pub async fn open(options: PgConnectOptions, pool: PoolSettings) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let records = {
            let pool = pool.clone();
            Recorder::start(move |rows| credentials::insert_issued(pool.clone(), rows))
        };
        let (commits, _) = broadcast::channel(COMMIT_NOTICES);
        let current: i64 = sqlx::query_scalar("SELECT value FROM revision WHERE id = 1")
            .fetch_one(&pool)
            .await?;
        let known = Arc::new(AtomicU64::new(super::rows::revision_from_column(current)?));
        tokio::spawn(listen::run(pool.clone(), commits.clone(), known.clone()));
        Ok(Self {
            pool,
            records,
            commits,
            known,
        })
    }

    /// The pool, for `migrate`.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction holding the revision row's lock from its first
    /// statement: every event writer of every server waits for it.
    async fn event_tx(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT value FROM revision WHERE id = 1 FOR UPDATE")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Commits `tx` (with a notice to the other servers when it wrote
    /// events), then tells this server's tailer.
    async fn commit(
        &self,
        tx: Transaction<'static, Postgres>,
        events: Vec<Arc<Event>>,
    ) -> Result<()> {
        let mut tx = tx;
        if let Some(last) = events.last() {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(last.revision.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if let Some(last) = events.last() {
            self.known.fetch_max(last.revision, Ordering::AcqRel);
            // No tailer is fine (tools that only write): the log has it all.
            let _ = self.commits.send(events.into());
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::datastore::Connection for PostgresDataStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// A unique violation, as the caller's refusal.
fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A value that does not fit PostgreSQL's INTEGER.
fn position(i: usize) -> Result<i32> {
    i32::try_from(i).map_err(|_| DataStoreError::InvalidArgument(format!("position {i}")))
}

#[cfg(test)]
mod tests;
