//! Issued credentials (kept until they expire, so they can be revoked) and
//! revocations. Serials of X.509-SVIDs are group-committed (`recorder`).

use async_trait::async_trait;
use signet_core::SpiffeId;
use sqlx::{Row, SqlitePool};

use super::events::append_in;
use super::rows::MAX_PARAMS;
use super::SqliteDataStore;
use crate::datastore::rows::{revocation_from_row, REVOCATION_COLUMNS};
use crate::datastore::{
    CredentialStore, DataStoreError, IssuedX509, Result, Revocation, RevokedKind,
};
use crate::events::Change;

/// Inserts `rows` in one transaction, in multi-row statements within
/// SQLite's bound on parameters.
pub(super) async fn insert_issued(writer: SqlitePool, rows: Vec<IssuedX509>) -> Result<()> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in rows.chunks(MAX_PARAMS / 4) {
        let values = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT OR REPLACE INTO issued_x509 (serial, spiffe_id, authority_id, expires_at) VALUES {values}"
        );
        let mut query = sqlx::query(&sql);
        for r in chunk {
            query = query
                .bind(&r.serial)
                .bind(r.spiffe_id.to_string())
                .bind(&r.authority_id)
                .bind(r.expires_at);
        }
        query.execute(&mut *tx).await?;
    }
    let audit: Vec<String> = rows.into_iter().filter_map(|r| r.audit).collect();
    super::audit::append_in(&mut tx, audit).await?;
    Ok(tx.commit().await?)
}

#[async_trait]
impl CredentialStore for SqliteDataStore {
    async fn record_x509(
        &self,
        serial: &str,
        spiffe_id: &SpiffeId,
        authority_id: &str,
        expires_at: i64,
    ) -> Result<()> {
        self.record_x509_many(vec![IssuedX509 {
            serial: serial.to_owned(),
            spiffe_id: spiffe_id.clone(),
            authority_id: authority_id.to_owned(),
            expires_at,
            audit: None,
        }])
        .await
    }

    async fn record_x509_many(&self, issued: Vec<IssuedX509>) -> Result<()> {
        self.records.record(issued).await
    }

    async fn record_jwt(
        &self,
        jti: &str,
        spiffe_id: &SpiffeId,
        kid: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO issued_jwt (jti, spiffe_id, kid, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(jti)
        .bind(spiffe_id.to_string())
        .bind(kid)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn revoke(
        &self,
        kind: RevokedKind,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Revocation> {
        let mut tx = self.write_tx().await?;
        let lookup = match kind {
            RevokedKind::X509 => {
                "SELECT authority_id, expires_at FROM issued_x509 WHERE serial = ? AND expires_at > ?"
            }
            RevokedKind::Jwt => {
                "SELECT kid AS authority_id, expires_at FROM issued_jwt WHERE jti = ? AND expires_at > ?"
            }
        };
        let row = sqlx::query(lookup)
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            let what = match kind {
                RevokedKind::X509 => "X.509-SVID with serial",
                RevokedKind::Jwt => "JWT-SVID with jti",
            };
            return Err(DataStoreError::NotFound(format!(
                "{what} {id} (never issued by this trust domain's servers, or already expired)"
            )));
        };
        let authority_id: String = row.try_get("authority_id")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        sqlx::query(
            "INSERT INTO revocations (kind, id, authority_id, reason, revoked_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, id) DO NOTHING",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(&authority_id)
        .bind(reason)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {REVOCATION_COLUMNS} FROM revocations WHERE kind = ? AND id = ?"
        ))
        .bind(kind.as_str())
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let revocation = revocation_from_row(&row)?;
        let events = append_in(&mut tx, vec![Change::Revoked(revocation.clone())]).await?;
        self.commit(tx, events).await?;
        Ok(revocation)
    }

    async fn revocations(&self, now: i64) -> Result<Vec<Revocation>> {
        let rows = sqlx::query(&format!(
            "SELECT {REVOCATION_COLUMNS} FROM revocations WHERE expires_at > ? ORDER BY revoked_at, id"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(revocation_from_row).collect()
    }

    async fn prune_expired(&self, now: i64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        for sql in [
            "DELETE FROM issued_x509 WHERE expires_at <= ?",
            "DELETE FROM issued_jwt WHERE expires_at <= ?",
        ] {
            sqlx::query(sql).bind(now).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM revocations WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        self.commit(tx, Vec::new()).await?;
        Ok(done.rows_affected())
    }
}
