//! Issued credentials (kept until they expire, so they can be revoked) and
//! revocations. Serials of X.509-SVIDs are group-committed (`recorder`),
//! each group one statement.

use async_trait::async_trait;
use signet_core::SpiffeId;
use sqlx::{PgPool, Row};

use super::events::append_in;
use super::PostgresDataStore;
use crate::datastore::rows::{revocation_from_row, REVOCATION_COLUMNS};
use crate::datastore::{
    CredentialStore, DataStoreError, IssuedX509, Result, Revocation, RevokedKind,
};
use crate::events::Change;

/// Inserts `rows` in one statement, and their audit records, in one
/// transaction.
pub(super) async fn insert_issued(pool: PgPool, rows: Vec<IssuedX509>) -> Result<()> {
    let n = rows.len();
    let (mut serial, mut spiffe_id, mut authority_id, mut expires_at) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut audit = Vec::new();
    for r in rows {
        audit.extend(r.audit);
        serial.push(r.serial);
        spiffe_id.push(r.spiffe_id.to_string());
        authority_id.push(r.authority_id);
        expires_at.push(r.expires_at);
    }
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO issued_x509 (serial, spiffe_id, authority_id, expires_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) \
         ON CONFLICT (serial) DO UPDATE SET spiffe_id = EXCLUDED.spiffe_id, \
         authority_id = EXCLUDED.authority_id, expires_at = EXCLUDED.expires_at",
    )
    .bind(serial)
    .bind(spiffe_id)
    .bind(authority_id)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    super::audit::append_in(&mut tx, audit).await?;
    Ok(tx.commit().await?)
}

#[async_trait]
impl CredentialStore for PostgresDataStore {
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
            "INSERT INTO issued_jwt (jti, spiffe_id, kid, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (jti) DO UPDATE SET spiffe_id = EXCLUDED.spiffe_id, \
             kid = EXCLUDED.kid, expires_at = EXCLUDED.expires_at",
        )
        .bind(jti)
        .bind(spiffe_id.to_string())
        .bind(kid)
        .bind(expires_at)
        .execute(&self.pool)
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
        let mut tx = self.event_tx().await?;
        let lookup = match kind {
            RevokedKind::X509 => {
                "SELECT authority_id, expires_at FROM issued_x509 WHERE serial = $1 AND expires_at > $2"
            }
            RevokedKind::Jwt => {
                "SELECT kid AS authority_id, expires_at FROM issued_jwt WHERE jti = $1 AND expires_at > $2"
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
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, id) DO NOTHING",
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
            "SELECT {REVOCATION_COLUMNS} FROM revocations WHERE kind = $1 AND id = $2"
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
            "SELECT {REVOCATION_COLUMNS} FROM revocations WHERE expires_at > $1 \
             ORDER BY revoked_at, id"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(revocation_from_row).collect()
    }

    async fn prune_expired(&self, now: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM issued_x509 WHERE expires_at <= $1",
            "DELETE FROM issued_jwt WHERE expires_at <= $1",
        ] {
            sqlx::query(sql).bind(now).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM revocations WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        self.commit(tx, Vec::new()).await?;
        Ok(done.rows_affected())
    }
}
