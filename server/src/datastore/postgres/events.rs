//! The event log: one row per event, its id the revision, taken from the
//! `revision` row inside the writer's transaction (which holds its lock:
//! see `event_tx`).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::broadcast;

use super::PostgresDataStore;
use crate::datastore::rows::{event_from_row, revision_column, revision_from_column};
use crate::datastore::{DataStoreError, EventLog, Result};
use crate::events::{encode, Change, Event};

/// Takes the next `n` revisions from the counter row; returns the first.
pub(super) async fn reserve_revisions(tx: &mut Transaction<'_, Postgres>, n: u64) -> Result<u64> {
    let by = i64::try_from(n)
        .map_err(|_| DataStoreError::InvalidArgument(format!("{n} revisions at once")))?;
    let last: i64 =
        sqlx::query_scalar("UPDATE revision SET value = value + $1 WHERE id = 1 RETURNING value")
            .bind(by)
            .fetch_one(&mut **tx)
            .await?;
    Ok(revision_from_column(last)? + 1 - n)
}

/// Writes `events` (revisions already reserved) to the log, in one statement.
pub(super) async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[Arc<Event>],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(events.len());
    let mut kinds = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    for event in events {
        let (kind, payload) = encode(&event.change)?;
        ids.push(revision_column(event.revision)?);
        kinds.push(kind);
        payloads.push(payload);
    }
    sqlx::query(
        "INSERT INTO events (id, kind, payload) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[])",
    )
    .bind(ids)
    .bind(kinds)
    .bind(payloads)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends one event per change, in order, in `tx`.
pub(super) async fn append_in(
    tx: &mut Transaction<'_, Postgres>,
    changes: Vec<Change>,
) -> Result<Vec<Arc<Event>>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let first = reserve_revisions(tx, changes.len() as u64).await?;
    let events: Vec<Arc<Event>> = (first..)
        .zip(changes)
        .map(|(revision, change)| Arc::new(Event { revision, change }))
        .collect();
    insert_events(tx, &events).await?;
    Ok(events)
}

/// The revision of the last committed event.
pub(super) async fn current_revision(pool: &PgPool) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT value FROM revision WHERE id = 1")
        .fetch_one(pool)
        .await?;
    revision_from_column(n)
}

/// The events after `revision`, at most `limit`, in order.
pub(super) async fn events_after(
    pool: &PgPool,
    revision: u64,
    limit: usize,
) -> Result<Vec<Arc<Event>>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows =
        sqlx::query("SELECT id, kind, payload FROM events WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(revision_column(revision)?)
            .bind(limit)
            .fetch_all(pool)
            .await?;
    rows.iter().map(event_from_row).collect()
}

#[async_trait]
impl EventLog for PostgresDataStore {
    async fn append_events(&self, changes: Vec<Change>) -> Result<u64> {
        if changes.is_empty() {
            return self.current_revision().await;
        }
        let mut tx = self.event_tx().await?;
        let events = append_in(&mut tx, changes).await?;
        let last = events.last().map_or(0, |e| e.revision);
        self.commit(tx, events).await?;
        Ok(last)
    }

    async fn events_after(&self, revision: u64, limit: usize) -> Result<Vec<Arc<Event>>> {
        events_after(&self.pool, revision, limit).await
    }

    async fn current_revision(&self) -> Result<u64> {
        current_revision(&self.pool).await
    }

    async fn events_floor(&self) -> Result<u64> {
        // Before the first event kept; with none, nothing is missing after
        // the current revision.
        let n: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT MIN(id) - 1 FROM events), \
             (SELECT value FROM revision WHERE id = 1))",
        )
        .fetch_one(&self.pool)
        .await?;
        revision_from_column(n)
    }

    async fn prune_events(&self, keep: u64) -> Result<u64> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "DELETE FROM events WHERE id <= (SELECT value FROM revision WHERE id = 1) - $1",
        )
        .bind(keep)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    fn commits(&self) -> broadcast::Receiver<Arc<[Arc<Event>]>> {
        self.commits.subscribe()
    }
}
