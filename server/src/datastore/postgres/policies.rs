//! Authorization policies on PostgreSQL, each change written with its event.

use async_trait::async_trait;
use sqlx::{Postgres, Row, Transaction};

use super::events::append_in;
use super::PostgresDataStore;
use crate::datastore::{DataStoreError, PolicyRecord, PolicyStore, Result};
use crate::events::Change;

const COLUMNS: &str = "name, text, created_at, updated_at";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<PolicyRecord> {
    Ok(PolicyRecord {
        name: row.try_get("name")?,
        text: row.try_get("text")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn policy_in(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<Option<PolicyRecord>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM policies WHERE name = $1"))
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

#[async_trait]
impl PolicyStore for PostgresDataStore {
    async fn create_policy(&self, record: PolicyRecord) -> Result<PolicyRecord> {
        let mut tx = self.event_tx().await?;
        if policy_in(&mut tx, &record.name).await?.is_some() {
            return Err(DataStoreError::AlreadyExists(format!(
                "policy {:?} already exists (policy update replaces it)",
                record.name
            )));
        }
        sqlx::query(&format!(
            "INSERT INTO policies ({COLUMNS}) VALUES ($1, $2, $3, $4)"
        ))
        .bind(&record.name)
        .bind(&record.text)
        .bind(record.created_at)
        .bind(record.updated_at)
        .execute(&mut *tx)
        .await?;
        let events = append_in(&mut tx, vec![Change::PolicySet(record.clone())]).await?;
        self.commit(tx, events).await?;
        Ok(record)
    }

    async fn update_policy(&self, record: PolicyRecord) -> Result<PolicyRecord> {
        let mut tx = self.event_tx().await?;
        let Some(stored) = policy_in(&mut tx, &record.name).await? else {
            return Err(DataStoreError::NotFound(format!(
                "policy {:?}",
                record.name
            )));
        };
        let record = PolicyRecord {
            created_at: stored.created_at,
            ..record
        };
        sqlx::query("UPDATE policies SET text = $1, updated_at = $2 WHERE name = $3")
            .bind(&record.text)
            .bind(record.updated_at)
            .bind(&record.name)
            .execute(&mut *tx)
            .await?;
        let events = append_in(&mut tx, vec![Change::PolicySet(record.clone())]).await?;
        self.commit(tx, events).await?;
        Ok(record)
    }

    async fn delete_policy(&self, name: &str) -> Result<PolicyRecord> {
        let mut tx = self.event_tx().await?;
        let Some(stored) = policy_in(&mut tx, name).await? else {
            return Err(DataStoreError::NotFound(format!("policy {name:?}")));
        };
        sqlx::query("DELETE FROM policies WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let events = append_in(&mut tx, vec![Change::PolicyRemoved(name.to_owned())]).await?;
        self.commit(tx, events).await?;
        Ok(stored)
    }

    async fn policy(&self, name: &str) -> Result<Option<PolicyRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM policies WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn policies(&self) -> Result<Vec<PolicyRecord>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM policies ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }
}
