//! Join tokens and agents. Attesting burns the token and records the agent
//! in one transaction; a ban or an eviction is written with its event.

use async_trait::async_trait;
use signet_core::SpiffeId;
use sqlx::{Row, Sqlite, Transaction};

use super::events::append_in;
use super::SqliteDataStore;
use crate::datastore::rows::{agent_from_row, selectors_json, AGENT_COLUMNS};
use crate::datastore::{AgentRecord, AgentStore, DataStoreError, Result};
use crate::events::Change;

async fn agent_in(tx: &mut Transaction<'_, Sqlite>, id: &SpiffeId) -> Result<Option<AgentRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE spiffe_id = ?"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(agent_from_row).transpose()
}

/// Inserts or replaces the agent's record; refuses a banned ID (the
/// caller's transaction is then dropped, which rolls it back).
async fn upsert_agent_in(
    tx: &mut Transaction<'_, Sqlite>,
    agent: AgentRecord,
) -> Result<AgentRecord> {
    if let Some(existing) = agent_in(tx, &agent.spiffe_id).await? {
        if existing.banned {
            return Err(DataStoreError::AgentBanned);
        }
    }
    sqlx::query(&format!(
        "INSERT INTO agents ({AGENT_COLUMNS}) VALUES (?, ?, ?, ?, FALSE, ?, ?) \
         ON CONFLICT (spiffe_id) DO UPDATE SET attestation_type = excluded.attestation_type, \
         serial = excluded.serial, expires_at = excluded.expires_at, \
         attested_at = excluded.attested_at, selectors = excluded.selectors"
    ))
    .bind(agent.spiffe_id.to_string())
    .bind(&agent.attestation_type)
    .bind(&agent.serial)
    .bind(agent.expires_at)
    .bind(agent.attested_at)
    .bind(selectors_json(&agent.selectors)?)
    .execute(&mut **tx)
    .await?;
    Ok(AgentRecord {
        banned: false,
        ..agent
    })
}

fn not_found(id: &SpiffeId) -> DataStoreError {
    DataStoreError::NotFound(format!("agent {id}"))
}

#[async_trait]
impl AgentStore for SqliteDataStore {
    async fn create_join_token(&self, token_sha256: &str, expires_at: i64) -> Result<()> {
        let res = sqlx::query("INSERT INTO join_tokens (token_sha256, expires_at) VALUES (?, ?)")
            .bind(token_sha256)
            .bind(expires_at)
            .execute(&self.writer)
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(
                DataStoreError::AlreadyExists("join token already exists".into()),
            ),
            Err(e) => Err(e.into()),
        }
    }

    async fn join_token(&self, token_sha256: &str) -> Result<Option<(String, i64)>> {
        let row =
            sqlx::query("SELECT token_sha256, expires_at FROM join_tokens WHERE token_sha256 = ?")
                .bind(token_sha256)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| Ok((r.try_get("token_sha256")?, r.try_get("expires_at")?)))
            .transpose()
    }

    async fn attest_with_join_token(
        &self,
        token_sha256: &str,
        now: i64,
        agent: AgentRecord,
    ) -> Result<AgentRecord> {
        let mut tx = self.write_tx().await?;
        // Writers are serialized, so of two concurrent attests with one token
        // exactly one sees the row.
        let expires_at: Option<i64> = sqlx::query_scalar(
            "DELETE FROM join_tokens WHERE token_sha256 = ? RETURNING expires_at",
        )
        .bind(token_sha256)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(expires_at) = expires_at else {
            return Err(DataStoreError::JoinTokenNotFound);
        };
        if expires_at <= now {
            tx.rollback().await?;
            return Err(DataStoreError::JoinTokenExpired);
        }
        let agent = upsert_agent_in(&mut tx, agent).await?;
        self.commit(tx, Vec::new()).await?;
        Ok(agent)
    }

    async fn prune_join_tokens(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM join_tokens WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    async fn attest_agent(&self, agent: AgentRecord) -> Result<AgentRecord> {
        let mut tx = self.write_tx().await?;
        let agent = upsert_agent_in(&mut tx, agent).await?;
        self.commit(tx, Vec::new()).await?;
        Ok(agent)
    }

    async fn get_agent(&self, id: &SpiffeId) -> Result<Option<AgentRecord>> {
        let mut tx = self.pool.begin().await?;
        let agent = agent_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(agent)
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents ORDER BY spiffe_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn update_agent_svid(&self, id: &SpiffeId, serial: &str, expires_at: i64) -> Result<()> {
        let done = sqlx::query("UPDATE agents SET serial = ?, expires_at = ? WHERE spiffe_id = ?")
            .bind(serial)
            .bind(expires_at)
            .bind(id.to_string())
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    async fn evict_agent(&self, id: &SpiffeId) -> Result<AgentRecord> {
        let mut tx = self.write_tx().await?;
        let agent = agent_in(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        sqlx::query("DELETE FROM agents WHERE spiffe_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let change = Change::AgentRevoked {
            agent_id: id.clone(),
            banned: false,
        };
        let events = append_in(&mut tx, vec![change]).await?;
        self.commit(tx, events).await?;
        Ok(agent)
    }

    async fn ban_agent(&self, id: &SpiffeId) -> Result<AgentRecord> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE agents SET banned = TRUE WHERE spiffe_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        let agent = agent_in(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        let change = Change::AgentRevoked {
            agent_id: id.clone(),
            banned: true,
        };
        let events = append_in(&mut tx, vec![change]).await?;
        self.commit(tx, events).await?;
        Ok(agent)
    }
}
