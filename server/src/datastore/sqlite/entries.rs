//! Registration entries. Each stored or deleted entry is written with its
//! event; the entry's revision is the event's.

use std::collections::HashSet;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use signet_core::spiffe_id::RESERVED_PATH;
use signet_core::{RegistrationEntry, SpiffeId, TrustDomain};
use sqlx::{Sqlite, Transaction};

use super::events::{append_in, insert_events, reserve_revisions};
use super::rows::{marks, ENTRIES_BY_PARENT, MAX_PARAMS};
use super::SqliteDataStore;
use crate::datastore::batch;
use crate::datastore::rows::{
    entry_from_row, revision_column, selectors_json, to_json, trust_domains_json, ttl_column,
    ENTRY_COLUMNS, ENTRY_COLUMN_COUNT,
};
use crate::datastore::{
    DataStoreError, EntryFilter, EntryRecord, EntryStore, EntryUpdate, NewEntry, Result,
};
use crate::events::Change;

/// Stored entries whose SPIFFE ID is one of `spiffe_ids`.
async fn entries_with_spiffe_ids_in(
    tx: &mut Transaction<'_, Sqlite>,
    spiffe_ids: &[String],
) -> Result<Vec<EntryRecord>> {
    let mut out = Vec::new();
    for chunk in spiffe_ids.chunks(MAX_PARAMS) {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE spiffe_id IN ({})",
            marks(chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            out.push(entry_from_row(&row)?);
        }
    }
    Ok(out)
}

/// Which of `ids` are stored entry ids.
async fn stored_ids_in(tx: &mut Transaction<'_, Sqlite>, ids: &[&str]) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for chunk in ids.chunks(MAX_PARAMS) {
        let sql = format!(
            "SELECT id FROM entries WHERE id IN ({})",
            marks(chunk.len())
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        out.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(out)
}

/// Inserts `records` (revisions assigned) in one statement.
async fn insert_entries_in(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[&EntryRecord],
) -> Result<()> {
    let row = format!("({})", marks(ENTRY_COLUMN_COUNT));
    let sql = format!(
        "INSERT INTO entries ({ENTRY_COLUMNS}) VALUES {}",
        vec![row.as_str(); records.len()].join(", ")
    );
    let mut query = sqlx::query(&sql);
    for rec in records {
        let e = &rec.entry;
        query = query
            .bind(e.id.clone())
            .bind(e.spiffe_id.to_string())
            .bind(e.parent_id.to_string())
            .bind(selectors_json(&e.selectors)?)
            .bind(ttl_column(e.x509_svid_ttl))
            .bind(ttl_column(e.jwt_svid_ttl))
            .bind(to_json(&e.dns_names)?)
            .bind(e.hint.clone())
            .bind(e.admin)
            .bind(e.downstream)
            .bind(revision_column(e.revision)?)
            .bind(rec.created_at)
            .bind(rec.node)
            .bind(trust_domains_json(&e.federates_with)?);
    }
    query.execute(&mut **tx).await.map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => match records {
            [one] => batch::id_taken(&one.entry.id),
            _ => DataStoreError::AlreadyExists("an entry id of the batch already exists".into()),
        },
        other => other.into(),
    })?;
    Ok(())
}

impl SqliteDataStore {
    /// Stores `entry` with its event unless it duplicates a stored one.
    async fn insert_entry(
        &self,
        entry: RegistrationEntry,
        created_at: i64,
        node: bool,
    ) -> Result<EntryRecord> {
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE spiffe_id = ? AND parent_id = ?"
        ))
        .bind(entry.spiffe_id.to_string())
        .bind(entry.parent_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let stored = rows
            .iter()
            .map(entry_from_row)
            .collect::<Result<Vec<_>>>()?;
        batch::check_not_duplicate(&entry, &stored)?;
        let record = EntryRecord {
            entry: RegistrationEntry {
                revision: reserve_revisions(&mut tx, 1).await?,
                ..entry
            },
            created_at,
            node,
        };
        insert_entries_in(&mut tx, &[&record]).await?;
        let events = batch::created_events(&[&record]);
        insert_events(&mut tx, &events).await?;
        self.commit(tx, events).await?;
        Ok(record)
    }
}

#[async_trait]
impl EntryStore for SqliteDataStore {
    async fn create_entry(&self, entry: RegistrationEntry, created_at: i64) -> Result<EntryRecord> {
        self.insert_entry(entry, created_at, false).await
    }

    async fn create_node_alias(
        &self,
        entry: RegistrationEntry,
        created_at: i64,
    ) -> Result<EntryRecord> {
        self.insert_entry(entry, created_at, true).await
    }

    async fn create_entries(
        &self,
        entries: Vec<NewEntry>,
        created_at: i64,
    ) -> Result<Vec<Result<EntryRecord>>> {
        let mut tx = self.write_tx().await?;
        // What is stored already, read in a few statements rather than one
        // per entry (each statement is a hand-off to SQLite's thread).
        let spiffe_ids: Vec<String> = entries
            .iter()
            .map(|e| e.entry.spiffe_id.to_string())
            .collect();
        let stored = entries_with_spiffe_ids_in(&mut tx, &spiffe_ids).await?;
        let ids: Vec<&str> = entries.iter().map(|e| e.entry.id.as_str()).collect();
        let taken = stored_ids_in(&mut tx, &ids).await?;
        let verdicts = batch::verdicts(entries, stored, taken);
        let first = match batch::accepted(&verdicts) {
            0 => 0,
            n => reserve_revisions(&mut tx, n).await?,
        };
        let out = batch::records(verdicts, first, created_at);
        let stored: Vec<&EntryRecord> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
        for chunk in stored.chunks(MAX_PARAMS / ENTRY_COLUMN_COUNT) {
            insert_entries_in(&mut tx, chunk).await?;
        }
        let events = batch::created_events(&stored);
        insert_events(&mut tx, &events).await?;
        self.commit(tx, events).await?;
        Ok(out)
    }

    async fn get_entry(&self, id: &str) -> Result<Option<EntryRecord>> {
        let row = sqlx::query(&format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn get_entries(&self, ids: &[&str]) -> Result<Vec<EntryRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_PARAMS) {
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE id IN ({})",
                marks(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push(entry_from_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn entries_with_reserved_ids(&self, td: &TrustDomain) -> Result<Vec<EntryRecord>> {
        // An exact prefix comparison (LIKE would take `_` in a trust domain
        // for a wildcard); the entries_spiffe_id index is not used, but
        // this runs once, at start.
        let exact = format!("spiffe://{td}{RESERVED_PATH}");
        let below = format!("{exact}/");
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE spiffe_id = ? OR substr(spiffe_id, 1, length(?)) = ? ORDER BY created_at, id"
        ))
        .bind(&exact)
        .bind(&below)
        .bind(&below)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<EntryRecord>> {
        let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE 1 = 1");
        if filter.spiffe_id.is_some() {
            sql.push_str(" AND spiffe_id = ?");
        }
        if filter.parent_id.is_some() {
            sql.push_str(" AND parent_id = ?");
        }
        if filter.node.is_some() {
            sql.push_str(" AND node = ?");
        }
        sql.push_str(" ORDER BY created_at, id");
        let mut query = sqlx::query(&sql);
        if let Some(id) = &filter.spiffe_id {
            query = query.bind(id.to_string());
        }
        if let Some(id) = &filter.parent_id {
            query = query.bind(id.to_string());
        }
        if let Some(node) = filter.node {
            query = query.bind(node);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let rec = entry_from_row(row)?;
            if filter
                .selectors
                .iter()
                .all(|s| rec.entry.selectors.contains(s))
            {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn entries_by_parent_streamed(&self, parent: &SpiffeId) -> BoxStream<'_, Result<EntryRecord>> {
        sqlx::query(ENTRIES_BY_PARENT.as_str())
            .bind(parent.to_string())
            .fetch(&self.pool)
            .map(|row| row.map_err(Into::into).and_then(|row| entry_from_row(&row)))
            .boxed()
    }

    async fn delete_entry(&self, id: &str) -> Result<EntryRecord> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(&format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(DataStoreError::NotFound(format!("entry {id}")));
        };
        let rec = entry_from_row(&row)?;
        sqlx::query("DELETE FROM entries WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let events = append_in(&mut tx, vec![Change::EntryDeleted(rec.clone())]).await?;
        self.commit(tx, events).await?;
        Ok(rec)
    }

    async fn update_entry(&self, id: &str, update: EntryUpdate) -> Result<EntryRecord> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(&format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(DataStoreError::NotFound(format!("entry {id}")));
        };
        let mut rec = entry_from_row(&row)?;
        update.apply(&mut rec.entry);
        rec.entry.revision = reserve_revisions(&mut tx, 1).await?;
        sqlx::query(
            "UPDATE entries SET federates_with = ?, downstream = ?, revision = ? WHERE id = ?",
        )
        .bind(trust_domains_json(&rec.entry.federates_with)?)
        .bind(rec.entry.downstream)
        .bind(revision_column(rec.entry.revision)?)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let event = std::sync::Arc::new(crate::events::Event {
            revision: rec.entry.revision,
            change: Change::EntryUpdated(rec.clone()),
        });
        insert_events(&mut tx, std::slice::from_ref(&event)).await?;
        self.commit(tx, vec![event]).await?;
        Ok(rec)
    }

    async fn count_entries(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM entries")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
