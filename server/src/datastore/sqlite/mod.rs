//! The SQLite datastore: one file in the data dir, WAL journal, full fsync,
//! foreign keys, a busy timeout so concurrent writers wait instead of failing.
//! One file per store: `agents`, `entries`, `credentials`, `authorities`,
//! `events`.
//!
//! Every write goes through one connection of its own (`writer`), so
//! writers in this process queue fairly on the pool instead of meeting in
//! SQLite's busy handler, which sleeps for milliseconds between retries
//! (that left the cores idle while signing batches waited to be recorded).
//! Reads use a pool of their own and, under WAL, never wait for the writer.
//! The WAL is checkpointed from a reader connection (`checkpoint`), not in
//! the writer's commits.
//!
//! Every transaction that writes starts with `BEGIN IMMEDIATE`. A deferred
//! transaction that reads first holds a WAL read snapshot; if another writer
//! commits meanwhile, its upgrade to a writer fails at once with SQLITE_BUSY
//! ("database is locked", BUSY_SNAPSHOT) without waiting on the busy timeout.

mod agents;
mod audit;
mod authorities;
mod checkpoint;
mod credentials;
mod entries;
mod events;
mod federation;
mod policies;
mod rows;
mod servers;
mod sightings;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use tokio::sync::broadcast;

use super::{DataStoreError, Result};
use crate::datastore::recorder::Recorder;
use crate::events::Event;

/// The schema, compiled into the binary so a fresh machine needs no files.
static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// Commit notices a slow tailer may fall behind by before it reads the log.
const COMMIT_NOTICES: usize = 1024;

/// Creates the database file 0600 if missing, and brings an existing file
/// (and its WAL and shared-memory files, which SQLite creates with the
/// database file's mode) to 0600.
async fn restrict_files(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |p: &Path, e: std::io::Error| DataStoreError::Io {
        path: p.to_owned(),
        source: Arc::new(e),
    };
    let created = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await;
    match created {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(path, e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        match tokio::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&file, e)),
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct SqliteDataStore {
    /// Readers.
    pool: SqlitePool,
    /// The one connection every write uses.
    writer: SqlitePool,
    /// Group commit of issued serials.
    records: Recorder,
    /// Each committed batch of events, for the bus's tailer.
    commits: broadcast::Sender<Arc<[Arc<Event>]>>,
}

impl SqliteDataStore {
    /// Opens (creating if needed) the database file and applies migrations.
    /// The file is 0600: it holds the registration and who was attested.
    pub async fn open(path: &Path) -> Result<Self> {
        restrict_files(path).await?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Rows cross from SQLite's thread to the async side through a
            // channel; at the default 50 a 10k-entry snapshot query spent
            // most of its time switching threads on a full channel.
            .row_buffer_size(1024)
            // Checkpoints run off the writer (see `checkpoint`).
            .pragma("wal_autocheckpoint", "0");
        let open = |connections| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .connect_with(options.clone())
        };
        let writer = open(1).await?;
        MIGRATOR.run(&writer).await?;
        let pool = open(4).await?;
        tokio::spawn(checkpoint::run(pool.clone()));
        let records = {
            let writer = writer.clone();
            Recorder::start(move |rows| credentials::insert_issued(writer.clone(), rows))
        };
        let (commits, _) = broadcast::channel(COMMIT_NOTICES);
        Ok(Self {
            pool,
            writer,
            records,
            commits,
        })
    }

    /// A transaction that holds the write lock from its first statement
    /// (waiting for it up to the busy timeout); see the module comment.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Commits `tx`, then tells the tailer of the events it wrote.
    async fn commit(
        &self,
        tx: Transaction<'static, Sqlite>,
        events: Vec<Arc<Event>>,
    ) -> Result<()> {
        tx.commit().await?;
        if !events.is_empty() {
            // No tailer is fine (tools that only write): the log has it all.
            let _ = self.commits.send(events.into());
        }
        Ok(())
    }

    /// The readers' pool, for `migrate`.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// `PRAGMA integrity_check`: `ok` when the file is sound.
    pub async fn integrity_check(&self) -> Result<String> {
        Ok(sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&self.pool)
            .await?)
    }
}

#[async_trait::async_trait]
impl crate::datastore::Connection for SqliteDataStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests;
