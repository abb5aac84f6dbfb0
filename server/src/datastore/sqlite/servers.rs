//! The servers of the trust domain (one, on SQLite) and the CRLs each signs.

use async_trait::async_trait;

use super::authorities::{authorities_in, bump_sequence_in};
use super::events::append_in;
use super::SqliteDataStore;
use crate::datastore::rows::{server_from_row, Columns, SERVER_COLUMNS};
use crate::datastore::{DataStoreError, Result, ServerRecord, ServerStore, StoredCrl};
use crate::events::Change;

#[async_trait]
impl ServerStore for SqliteDataStore {
    async fn register_server(&self, server: ServerRecord) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!(
            "INSERT INTO servers ({SERVER_COLUMNS}) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, \
             address = excluded.address, started_at = excluded.started_at, \
             last_seen = excluded.last_seen"
        ))
        .bind(&server.id)
        .bind(&server.hostname)
        .bind(&server.address)
        .bind(server.started_at)
        .bind(server.last_seen)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE authorities SET server_id = ? WHERE server_id = ''")
            .bind(&server.id)
            .execute(&mut *tx)
            .await?;
        self.commit(tx, Vec::new()).await
    }

    async fn touch_server(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE servers SET last_seen = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn list_servers(&self) -> Result<Vec<ServerRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SERVER_COLUMNS} FROM servers ORDER BY started_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(server_from_row).collect()
    }

    async fn remove_server(&self, id: &str) -> Result<ServerRecord> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(&format!(
            "DELETE FROM servers WHERE id = ? RETURNING {SERVER_COLUMNS}"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(DataStoreError::NotFound(format!("server {id:?}")));
        };
        let server = server_from_row(&row)?;
        self.commit(tx, Vec::new()).await?;
        Ok(server)
    }

    async fn prune_authorities(&self, now: i64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let gone = sqlx::query(
            "DELETE FROM authorities WHERE not_after <= ? \
             AND server_id NOT IN (SELECT id FROM servers) RETURNING tainted",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        // Their CRLs went with them (no one signs those CAs' CRLs again).
        sqlx::query(
            "DELETE FROM crls WHERE server_id NOT IN (SELECT id FROM servers) \
             AND authority_id NOT IN (SELECT id FROM authorities WHERE kind = 'x509')",
        )
        .execute(&mut *tx)
        .await?;
        if gone.is_empty() {
            self.commit(tx, Vec::new()).await?;
            return Ok(0);
        }
        let tainted = gone
            .iter()
            .map(|r| r.flag("tainted"))
            .collect::<Result<Vec<bool>>>()?;
        let all = authorities_in(&mut tx).await?;
        let (_, moved) = bump_sequence_in(&mut tx, &all).await?;
        let mut changes = Vec::new();
        if moved {
            changes.push(Change::BundleChanged);
        }
        if tainted.contains(&true) {
            changes.push(Change::TaintedChanged);
        }
        let events = append_in(&mut tx, changes).await?;
        self.commit(tx, events).await?;
        Ok(gone.len() as u64)
    }

    async fn save_crls(&self, server_id: &str, crls: Vec<StoredCrl>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM crls WHERE server_id = ?")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        for crl in &crls {
            sqlx::query(
                "INSERT OR REPLACE INTO crls (authority_id, server_id, der) VALUES (?, ?, ?)",
            )
            .bind(&crl.authority_id)
            .bind(server_id)
            .bind(&crl.der)
            .execute(&mut *tx)
            .await?;
        }
        let events = append_in(&mut tx, vec![Change::CrlsChanged]).await?;
        self.commit(tx, events).await
    }

    async fn crls(&self) -> Result<Vec<StoredCrl>> {
        let rows =
            sqlx::query("SELECT authority_id, server_id, der FROM crls ORDER BY authority_id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredCrl {
                    authority_id: r.text("authority_id")?,
                    server_id: r.text("server_id")?,
                    der: r.bytes_opt("der")?.unwrap_or_default(),
                })
            })
            .collect()
    }
}
