//! The audit chain on PostgreSQL: an append locks the log against other
//! appends (readers go on) from before it reads the head until it commits,
//! so every server of the group extends one chain.

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::PostgresDataStore;
use crate::audit::{chain, Checkpoint, StoredRecord};
use crate::datastore::rows::{
    audit_checkpoint_from_row, audit_kind_marker as kind_marker, audit_of_kind as of_kind,
    audit_record_from_row, audit_seq_column, AUDIT_CHECKPOINT_COLUMNS,
};
use crate::datastore::{AuditStore, Result};

async fn head_in(tx: &mut Transaction<'_, Postgres>) -> Result<Option<StoredRecord>> {
    sqlx::query("SELECT seq, record, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(audit_record_from_row)
        .transpose()
}

/// Chains `records` after the current head, in `tx`.
pub(super) async fn append_in(
    tx: &mut Transaction<'_, Postgres>,
    records: Vec<String>,
) -> Result<Option<StoredRecord>> {
    if records.is_empty() {
        return Ok(None);
    }
    sqlx::query("LOCK TABLE audit_log IN EXCLUSIVE MODE")
        .execute(&mut **tx)
        .await?;
    let head = head_in(tx).await?;
    let rows = chain::extend(head.as_ref(), records);
    let mut seqs = Vec::with_capacity(rows.len());
    for r in &rows {
        seqs.push(audit_seq_column(r.seq)?);
    }
    let texts: Vec<&str> = rows.iter().map(|r| r.record.as_str()).collect();
    let hashes: Vec<&str> = rows.iter().map(|r| r.hash.as_str()).collect();
    sqlx::query(
        "INSERT INTO audit_log (seq, record, hash) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[])",
    )
    .bind(seqs)
    .bind(texts)
    .bind(hashes)
    .execute(&mut **tx)
    .await?;
    Ok(rows.last().cloned())
}

#[async_trait]
impl AuditStore for PostgresDataStore {
    async fn append_audit(&self, records: Vec<String>) -> Result<Option<StoredRecord>> {
        let mut tx = self.pool.begin().await?;
        let head = append_in(&mut tx, records).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn audit_records(&self, from: u64, limit: usize) -> Result<Vec<StoredRecord>> {
        sqlx::query("SELECT seq, record, hash FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2")
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
            "SELECT seq, record, hash FROM audit_log WHERE strpos(record, $1) > 0 \
             ORDER BY seq DESC LIMIT $2",
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
        let done = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
            .bind(audit_seq_column(seq)?)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn add_audit_checkpoint(&self, c: Checkpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints \
             (seq, hash, time_ms, server_id, key_id, public_key, signature) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(audit_seq_column(c.seq)?)
        .bind(&c.hash)
        .bind(c.time_ms)
        .bind(&c.server_id)
        .bind(&c.key_id)
        .bind(&c.public_key)
        .bind(&c.signature)
        .execute(&self.pool)
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
