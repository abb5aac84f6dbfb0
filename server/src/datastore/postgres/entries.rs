//! Registration entries. Each stored or deleted entry is written with its
//! event; the entry's revision is the event's. The duplicate check runs
//! under the revision lock, so two servers storing the same entry at once
//! store it once.

use std::collections::HashSet;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use signet_core::spiffe_id::RESERVED_PATH;
use signet_core::{RegistrationEntry, SpiffeId, TrustDomain};
use sqlx::{Postgres, Transaction};

use super::events::{append_in, insert_events, reserve_revisions};
use super::{unique_violation, PostgresDataStore};
use crate::datastore::batch;
use crate::datastore::rows::{
    entry_from_row, revision_column, selectors_json, to_json, trust_domains_json, ttl_column,
    ENTRY_COLUMNS,
};
use crate::datastore::{
    DataStoreError, EntryFilter, EntryRecord, EntryStore, EntryUpdate, NewEntry, Result,
};
use crate::events::Change;

/// Stored entries whose SPIFFE ID is one of `spiffe_ids`.
async fn entries_with_spiffe_ids_in(
    tx: &mut Transaction<'_, Postgres>,
    spiffe_ids: &[String],
) -> Result<Vec<EntryRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {ENTRY_COLUMNS} FROM entries WHERE spiffe_id = ANY($1)"
    ))
    .bind(spiffe_ids)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(entry_from_row).collect()
}

/// Which of `ids` are stored entry ids.
async fn stored_ids_in(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[&str],
) -> Result<HashSet<String>> {
    let found: Vec<String> = sqlx::query_scalar("SELECT id FROM entries WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
    Ok(found.into_iter().collect())
}

/// Inserts `records` (revisions assigned) in one statement.
async fn insert_entries_in(
    tx: &mut Transaction<'_, Postgres>,
    records: &[&EntryRecord],
) -> Result<()> {
    let n = records.len();
    let (mut id, mut spiffe_id, mut parent_id, mut selectors) =
        (vec![], vec![], vec![], Vec::with_capacity(n));
    let (mut x509_ttl, mut jwt_ttl, mut dns, mut hint) = (vec![], vec![], vec![], vec![]);
    let (mut admin, mut downstream, mut revision, mut created_at, mut node) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut federates_with = Vec::with_capacity(n);
    for rec in records {
        let e = &rec.entry;
        id.push(e.id.as_str());
        spiffe_id.push(e.spiffe_id.to_string());
        parent_id.push(e.parent_id.to_string());
        selectors.push(selectors_json(&e.selectors)?);
        x509_ttl.push(ttl_column(e.x509_svid_ttl));
        jwt_ttl.push(ttl_column(e.jwt_svid_ttl));
        dns.push(to_json(&e.dns_names)?);
        hint.push(e.hint.as_str());
        admin.push(e.admin);
        downstream.push(e.downstream);
        revision.push(revision_column(e.revision)?);
        created_at.push(rec.created_at);
        node.push(rec.node);
        federates_with.push(trust_domains_json(&e.federates_with)?);
    }
    sqlx::query(&format!(
        "INSERT INTO entries ({ENTRY_COLUMNS}) SELECT * FROM UNNEST($1::text[], $2::text[], \
         $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[], \
         $9::boolean[], $10::boolean[], $11::bigint[], $12::bigint[], $13::boolean[], \
         $14::text[])"
    ))
    .bind(id)
    .bind(spiffe_id)
    .bind(parent_id)
    .bind(selectors)
    .bind(x509_ttl)
    .bind(jwt_ttl)
    .bind(dns)
    .bind(hint)
    .bind(admin)
    .bind(downstream)
    .bind(revision)
    .bind(created_at)
    .bind(node)
    .bind(federates_with)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if !unique_violation(&e) {
            return e.into();
        }
        match records {
            [one] => batch::id_taken(&one.entry.id),
            _ => DataStoreError::AlreadyExists("an entry id of the batch already exists".into()),
        }
    })?;
    Ok(())
}

impl PostgresDataStore {
    /// Stores `entry` with its event unless it duplicates a stored one.
    async fn insert_entry(
        &self,
        entry: RegistrationEntry,
        created_at: i64,
        node: bool,
    ) -> Result<EntryRecord> {
        let mut tx = self.event_tx().await?;
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE spiffe_id = $1 AND parent_id = $2"
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
impl EntryStore for PostgresDataStore {
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
        let mut tx = self.event_tx().await?;
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
        if !stored.is_empty() {
            insert_entries_in(&mut tx, &stored).await?;
        }
        let events = batch::created_events(&stored);
        insert_events(&mut tx, &events).await?;
        self.commit(tx, events).await?;
        Ok(out)
    }

    async fn get_entry(&self, id: &str) -> Result<Option<EntryRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn get_entries(&self, ids: &[&str]) -> Result<Vec<EntryRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ANY($1)"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn entries_with_reserved_ids(&self, td: &TrustDomain) -> Result<Vec<EntryRecord>> {
        // An exact prefix comparison (LIKE would take `_` in a trust domain
        // for a wildcard).
        let exact = format!("spiffe://{td}{RESERVED_PATH}");
        let below = format!("{exact}/");
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE spiffe_id = $1 \
             OR left(spiffe_id, length($2)) = $2 ORDER BY created_at, id"
        ))
        .bind(&exact)
        .bind(&below)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<EntryRecord>> {
        // Unset filters are NULL parameters, so one statement serves all.
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE ($1::text IS NULL OR spiffe_id = $1) \
             AND ($2::text IS NULL OR parent_id = $2) AND ($3::boolean IS NULL OR node = $3) \
             ORDER BY created_at, id"
        ))
        .bind(filter.spiffe_id.as_ref().map(|id| id.to_string()))
        .bind(filter.parent_id.as_ref().map(|id| id.to_string()))
        .bind(filter.node)
        .fetch_all(&self.pool)
        .await?;
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
        let mut tx = self.event_tx().await?;
        let row = sqlx::query(&format!(
            "DELETE FROM entries WHERE id = $1 RETURNING {ENTRY_COLUMNS}"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(DataStoreError::NotFound(format!("entry {id}")));
        };
        let rec = entry_from_row(&row)?;
        let events = append_in(&mut tx, vec![Change::EntryDeleted(rec.clone())]).await?;
        self.commit(tx, events).await?;
        Ok(rec)
    }

    async fn update_entry(&self, id: &str, update: EntryUpdate) -> Result<EntryRecord> {
        let mut tx = self.event_tx().await?;
        let row = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE id = $1"
        ))
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
            "UPDATE entries SET federates_with = $1, downstream = $2, revision = $3 WHERE id = $4",
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

/// One parent's entries in creation order, straight from the
/// `entries_parent_created` index.
static ENTRIES_BY_PARENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE parent_id = $1 ORDER BY created_at, id")
});
