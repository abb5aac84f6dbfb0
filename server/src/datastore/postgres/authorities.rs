//! Every server's authorities and the bundle's sequence. A server saves its
//! own whole, with their events, in one transaction under the revision lock
//! (so two servers' saves see each other's rows when they compute the
//! union's fingerprint); a taint or revocation of any server's authority is
//! a change of its own.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::{Postgres, Row, Transaction};

use super::events::append_in;
use super::{position, PostgresDataStore};
use crate::ca::AuthorityKind;
use crate::datastore::rows::{
    authority_from_row, merge_own, revision_from_column, sequence_from_column, AUTHORITY_COLUMNS,
};
use crate::datastore::{
    bundle_fingerprint, AuthorityRecord, AuthorityStore, DataStoreError, Result, SavedAuthorities,
    StoredAuthorities,
};
use crate::events::Change;

pub(super) async fn authorities_in(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<Vec<AuthorityRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {AUTHORITY_COLUMNS} FROM authorities ORDER BY server_id, position"
    ))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(authority_from_row).collect()
}

async fn insert_in(
    tx: &mut Transaction<'_, Postgres>,
    authorities: &[AuthorityRecord],
) -> Result<()> {
    for (i, a) in authorities.iter().enumerate() {
        sqlx::query(&format!(
            "INSERT INTO authorities ({AUTHORITY_COLUMNS}, position) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(a.kind.as_str())
        .bind(&a.id)
        .bind(&a.server_id)
        .bind(a.state.as_str())
        .bind(a.tainted)
        .bind(a.not_before)
        .bind(a.not_after)
        .bind(a.certificate.as_deref())
        .bind(a.public_key.as_deref())
        .bind(a.upstream_root.as_deref())
        .bind(a.upstream_chain.as_deref())
        .bind(position(i)?)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Moves the sequence when `all`'s bundle differs from the stored one; the
/// sequence now and whether it moved.
pub(super) async fn bump_sequence_in(
    tx: &mut Transaction<'_, Postgres>,
    all: &[AuthorityRecord],
) -> Result<(u64, bool)> {
    let moved = sqlx::query(
        "INSERT INTO bundle_state (id, sequence, fingerprint) VALUES (1, 1, $1) \
         ON CONFLICT (id) DO UPDATE SET sequence = bundle_state.sequence + 1, \
         fingerprint = EXCLUDED.fingerprint \
         WHERE bundle_state.fingerprint <> EXCLUDED.fingerprint",
    )
    .bind(bundle_fingerprint(all))
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0;
    let n: i64 = sqlx::query_scalar("SELECT sequence FROM bundle_state WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    Ok((sequence_from_column(n)?, moved))
}

async fn current_revision_in(tx: &mut Transaction<'_, Postgres>) -> Result<u64> {
    revision_from_column(
        sqlx::query_scalar("SELECT value FROM revision WHERE id = 1")
            .fetch_one(&mut **tx)
            .await?,
    )
}

async fn one_in(
    tx: &mut Transaction<'_, Postgres>,
    kind: AuthorityKind,
    id: &str,
) -> Result<AuthorityRecord> {
    let row = sqlx::query(&format!(
        "SELECT {AUTHORITY_COLUMNS} FROM authorities WHERE kind = $1 AND id = $2"
    ))
    .bind(kind.as_str())
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref()
        .map(authority_from_row)
        .transpose()?
        .ok_or_else(|| DataStoreError::NotFound(format!("{} authority {id:?}", kind.as_str())))
}

#[async_trait]
impl AuthorityStore for PostgresDataStore {
    async fn load_authorities(&self) -> Result<StoredAuthorities> {
        // One snapshot for the rows, the sequence and the revision.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let authorities = authorities_in(&mut tx).await?;
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT sequence FROM bundle_state WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?;
        let revision = current_revision_in(&mut tx).await?;
        tx.commit().await?;
        Ok(StoredAuthorities {
            authorities,
            sequence: sequence_from_column(stored.unwrap_or(0))?,
            revision,
        })
    }

    async fn save_authorities(
        &self,
        server_id: &str,
        authorities: Vec<AuthorityRecord>,
        changes: Vec<Change>,
    ) -> Result<SavedAuthorities> {
        let mut tx = self.event_tx().await?;
        let stored = authorities_in(&mut tx).await?;
        let revoked: HashSet<(String, String)> =
            sqlx::query("SELECT kind, id FROM revoked_authorities")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("kind")?, r.try_get("id")?)))
                .collect::<Result<_>>()?;
        let own = merge_own(server_id, authorities, &stored, &revoked);
        sqlx::query("DELETE FROM authorities WHERE server_id = $1")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        insert_in(&mut tx, &own).await?;
        let mut all: Vec<AuthorityRecord> = stored
            .into_iter()
            .filter(|a| a.server_id != server_id)
            .collect();
        all.extend(own);
        let (sequence, moved) = bump_sequence_in(&mut tx, &all).await?;
        let mut events = Vec::with_capacity(changes.len() + 1);
        if moved {
            events.push(Change::BundleChanged);
        }
        events.extend(changes);
        let events = append_in(&mut tx, events).await?;
        let revision = match events.last() {
            Some(e) => e.revision,
            None => current_revision_in(&mut tx).await?,
        };
        self.commit(tx, events).await?;
        Ok(SavedAuthorities {
            sequence,
            revision,
            authorities: all,
        })
    }

    async fn taint_authority(&self, kind: AuthorityKind, id: &str) -> Result<AuthorityRecord> {
        let mut tx = self.event_tx().await?;
        let mut found = one_in(&mut tx, kind, id).await?;
        found.check_taint()?;
        if found.tainted {
            return Ok(found);
        }
        sqlx::query("UPDATE authorities SET tainted = TRUE WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        found.tainted = true;
        let events = append_in(&mut tx, vec![Change::TaintedChanged]).await?;
        self.commit(tx, events).await?;
        Ok(found)
    }

    async fn revoke_authority(&self, kind: AuthorityKind, id: &str) -> Result<AuthorityRecord> {
        let mut tx = self.event_tx().await?;
        let found = one_in(&mut tx, kind, id).await?;
        found.check_revoke()?;
        sqlx::query("DELETE FROM authorities WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO revoked_authorities (kind, id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(kind.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let all = authorities_in(&mut tx).await?;
        let (_, moved) = bump_sequence_in(&mut tx, &all).await?;
        let mut changes = vec![Change::TaintedChanged];
        if moved {
            changes.insert(0, Change::BundleChanged);
        }
        let events = append_in(&mut tx, changes).await?;
        self.commit(tx, events).await?;
        Ok(found)
    }
}
