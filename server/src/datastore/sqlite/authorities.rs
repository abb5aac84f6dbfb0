//! The CA's authorities and the bundle's sequence, saved whole with their
//! events in one transaction.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::events::append_in;
use super::rows::revision_from_column;
use super::SqliteDataStore;
use crate::ca::{AuthorityKind, AuthorityState};
use crate::datastore::{
    AuthorityRecord, AuthorityStore, DataStoreError, Result, SavedAuthorities, StoredAuthorities,
};
use crate::events::Change;

fn authority_from_row(row: &SqliteRow) -> Result<AuthorityRecord> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    Ok(AuthorityRecord {
        kind: AuthorityKind::parse(&kind)
            .ok_or_else(|| DataStoreError::Corrupt(format!("authority kind {kind:?}")))?,
        id: row.try_get("id")?,
        state: AuthorityState::parse(&state)
            .ok_or_else(|| DataStoreError::Corrupt(format!("authority state {state:?}")))?,
        tainted: row.try_get("tainted")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        certificate: row.try_get("certificate")?,
    })
}

fn sequence(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| DataStoreError::Corrupt("negative bundle sequence".into()))
}

#[async_trait]
impl AuthorityStore for SqliteDataStore {
    async fn load_authorities(&self) -> Result<StoredAuthorities> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT kind, id, state, tainted, not_before, not_after, certificate \
             FROM authorities ORDER BY position",
        )
        .fetch_all(&mut *tx)
        .await?;
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT sequence FROM bundle_state WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(StoredAuthorities {
            authorities: rows.iter().map(authority_from_row).collect::<Result<_>>()?,
            sequence: sequence(stored.unwrap_or(0))?,
        })
    }

    async fn save_authorities(
        &self,
        authorities: Vec<AuthorityRecord>,
        fingerprint: &str,
        changes: Vec<Change>,
    ) -> Result<SavedAuthorities> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM authorities")
            .execute(&mut *tx)
            .await?;
        for (position, a) in (0_i64..).zip(&authorities) {
            sqlx::query(
                "INSERT INTO authorities \
                 (kind, id, state, tainted, not_before, not_after, certificate, position) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(a.kind.as_str())
            .bind(&a.id)
            .bind(a.state.as_str())
            .bind(a.tainted)
            .bind(a.not_before)
            .bind(a.not_after)
            .bind(a.certificate.as_deref())
            .bind(position)
            .execute(&mut *tx)
            .await?;
        }
        // The sequence moves only when the fingerprint does.
        let moved = sqlx::query(
            "INSERT INTO bundle_state (id, sequence, fingerprint) VALUES (1, 1, ?) \
             ON CONFLICT (id) DO UPDATE SET sequence = bundle_state.sequence + 1, \
             fingerprint = excluded.fingerprint \
             WHERE bundle_state.fingerprint <> excluded.fingerprint",
        )
        .bind(fingerprint)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let n: i64 = sqlx::query_scalar("SELECT sequence FROM bundle_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let mut all = Vec::with_capacity(changes.len() + 1);
        if moved {
            all.push(Change::BundleChanged);
        }
        all.extend(changes);
        let events = append_in(&mut tx, all).await?;
        let revision = match events.last() {
            Some(e) => e.revision,
            None => revision_from_column(
                sqlx::query_scalar("SELECT value FROM revision WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?,
            )?,
        };
        self.commit(tx, events).await?;
        Ok(SavedAuthorities {
            sequence: sequence(n)?,
            revision,
        })
    }
}
