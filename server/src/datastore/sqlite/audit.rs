//! The audit chain on SQLite: appends run in the writer's transaction (the
//! one writer connection, so they are serialized like every write).

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::rows::MAX_PARAMS;
use super::SqliteDataStore;
use crate::audit::{chain, Checkpoint, StoredRecord};
use crate::datastore::rows::{
    audit_checkpoint_from_row, audit_kind_marker as kind_marker, audit_of_kind as of_kind,
    audit_record_from_row, audit_seq_column, AUDIT_CHECKPOINT_COLUMNS,
};
use crate::datastore::{AuditStore, Result};

async fn head_in(tx: &mut Transaction<'_, Sqlite>) -> Result<Option<StoredRecord>> {
    sqlx::query("SELECT seq, record, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(audit_record_from_row)
        .transpose()
}

/// Chains `records` after the current head, in `tx`.
pub(super) async fn append_in(
    tx: &mut Transaction<'_, Sqlite>,
    records: Vec<String>,
) -> Result<Option<StoredRecord>> {
    if records.is_empty() {
        return Ok(None);
    }
    let head = head_in(tx).await?;
    let rows = chain::extend(head.as_ref(), records);
    for chunk in rows.chunks(MAX_PARAMS / 3) {
        let values = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!("INSERT INTO audit_log (seq, record, hash) VALUES {values}");
        let mut query = sqlx::query(&sql);
        for r in chunk {
            query = query
                .bind(audit_seq_column(r.seq)?)
                .bind(&r.record)
                .bind(&r.hash);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(rows.last().cloned())
}

#[async_trait]
impl AuditStore for SqliteDataStore {
    async fn append_audit(&self, records: Vec<String>) -> Result<Option<StoredRecord>> {
        let mut tx = self.write_tx().await?;
        let head = append_in(&mut tx, records).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn audit_records(&self, from: u64, limit: usize) -> Result<Vec<StoredRecord>> {
        sqlx::query("SELECT seq, record, hash FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?")
            .bind(audit_seq_column(from)?)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_record_from_row)
            .collect()
    }

    async fn audit_head(&self) -> Result<Option<StoredRecord>> {
        sqlx::query("SELECT seq, record, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(audit_record_from_row)
            .transpose()
    }

    async fn audit_latest(&self, kind: &str, limit: usize) -> Result<Vec<StoredRecord>> {
        let rows: Vec<StoredRecord> = sqlx::query(
            "SELECT seq, record, hash FROM audit_log WHERE instr(record, ?) > 0 \
             ORDER BY seq DESC LIMIT ?",
        )
        .bind(kind_marker(kind))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_record_from_row)
        .collect::<Result<_>>()?;
        Ok(of_kind(rows, kind))
    }

    async fn prune_audit(&self, seq: u64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM audit_log WHERE seq <= ?")
            .bind(audit_seq_column(seq)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn add_audit_checkpoint(&self, c: Checkpoint) -> Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO audit_checkpoints \
             (seq, hash, time_ms, server_id, key_id, public_key, signature) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(audit_seq_column(c.seq)?)
        .bind(&c.hash)
        .bind(c.time_ms)
        .bind(&c.server_id)
        .bind(&c.key_id)
        .bind(&c.public_key)
        .bind(&c.signature)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        sqlx::query(&format!(
            "SELECT {AUDIT_CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_checkpoint_from_row)
        .collect()
    }
}
