//! Federated trust domains' bundles and federation relationships, each
//! change written with its event.

use async_trait::async_trait;
use signet_core::TrustDomain;
use sqlx::{Sqlite, Transaction};

use super::events::append_in;
use super::SqliteDataStore;
use crate::datastore::rows::{
    federated_bundle_from_row, federated_document, profile_columns, relationship_from_row,
    revision_column, FEDERATED_BUNDLE_COLUMNS, RELATIONSHIP_COLUMNS,
};
use crate::datastore::{
    DataStoreError, FederatedBundleRecord, FederationStore, RelationshipRecord, Result,
};
use crate::events::Change;

async fn bundle_in(
    tx: &mut Transaction<'_, Sqlite>,
    td: &TrustDomain,
) -> Result<Option<FederatedBundleRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {FEDERATED_BUNDLE_COLUMNS} FROM federated_bundles WHERE trust_domain = ?"
    ))
    .bind(td.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(federated_bundle_from_row).transpose()
}

async fn relationship_in(
    tx: &mut Transaction<'_, Sqlite>,
    td: &TrustDomain,
) -> Result<Option<RelationshipRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {RELATIONSHIP_COLUMNS} FROM federation_relationships WHERE trust_domain = ?"
    ))
    .bind(td.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(relationship_from_row).transpose()
}

/// Writes `record` (replacing the stored one) with its event.
async fn put_bundle_in(
    tx: &mut Transaction<'_, Sqlite>,
    record: &FederatedBundleRecord,
) -> Result<Vec<std::sync::Arc<crate::events::Event>>> {
    sqlx::query(&format!(
        "INSERT OR REPLACE INTO federated_bundles ({FEDERATED_BUNDLE_COLUMNS}) \
         VALUES (?, ?, ?, ?, ?)"
    ))
    .bind(record.bundle.trust_domain.as_str())
    .bind(federated_document(record)?)
    .bind(revision_column(record.bundle.sequence)?)
    .bind(record.source.as_str())
    .bind(record.updated_at)
    .execute(&mut **tx)
    .await?;
    append_in(tx, vec![Change::FederatedBundleSet(record.clone())]).await
}

fn not_found(what: &str, td: &TrustDomain) -> DataStoreError {
    DataStoreError::NotFound(format!("{what} of trust domain {td}"))
}

#[async_trait]
impl FederationStore for SqliteDataStore {
    async fn set_federated_bundle(
        &self,
        record: FederatedBundleRecord,
        newer_only: bool,
    ) -> Result<FederatedBundleRecord> {
        let mut tx = self.write_tx().await?;
        let stored = bundle_in(&mut tx, &record.bundle.trust_domain).await?;
        if let Some(stored) = stored {
            if stored.bundle == record.bundle {
                return Ok(stored);
            }
            if newer_only && record.bundle.sequence < stored.bundle.sequence {
                return Err(crate::datastore::records::older_bundle(&stored, &record));
            }
        }
        let events = put_bundle_in(&mut tx, &record).await?;
        self.commit(tx, events).await?;
        Ok(record)
    }

    async fn federated_bundle(&self, td: &TrustDomain) -> Result<Option<FederatedBundleRecord>> {
        let mut tx = self.pool.begin().await?;
        let found = bundle_in(&mut tx, td).await?;
        tx.commit().await?;
        Ok(found)
    }

    async fn federated_bundles(&self) -> Result<Vec<FederatedBundleRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {FEDERATED_BUNDLE_COLUMNS} FROM federated_bundles ORDER BY trust_domain"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(federated_bundle_from_row).collect()
    }

    async fn delete_federated_bundle(&self, td: &TrustDomain) -> Result<FederatedBundleRecord> {
        let mut tx = self.write_tx().await?;
        if relationship_in(&mut tx, td).await?.is_some() {
            return Err(crate::datastore::records::fetched_bundle(td));
        }
        let stored = bundle_in(&mut tx, td)
            .await?
            .ok_or_else(|| not_found("no federated bundle", td))?;
        sqlx::query("DELETE FROM federated_bundles WHERE trust_domain = ?")
            .bind(td.as_str())
            .execute(&mut *tx)
            .await?;
        let events = append_in(&mut tx, vec![Change::FederatedBundleRemoved(td.clone())]).await?;
        self.commit(tx, events).await?;
        Ok(stored)
    }

    async fn create_relationship(
        &self,
        relationship: RelationshipRecord,
        bootstrap: Option<FederatedBundleRecord>,
    ) -> Result<RelationshipRecord> {
        let mut tx = self.write_tx().await?;
        let td = &relationship.trust_domain;
        if relationship_in(&mut tx, td).await?.is_some() {
            return Err(DataStoreError::AlreadyExists(format!(
                "a federation relationship with {td} already exists"
            )));
        }
        let (profile, endpoint_id, ca_bundle) = profile_columns(&relationship.profile);
        sqlx::query(&format!(
            "INSERT INTO federation_relationships ({RELATIONSHIP_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, 0, '')"
        ))
        .bind(td.as_str())
        .bind(&relationship.bundle_endpoint_url)
        .bind(profile)
        .bind(endpoint_id)
        .bind(ca_bundle)
        .bind(relationship.created_at)
        .execute(&mut *tx)
        .await?;
        let mut events = Vec::new();
        if let Some(bootstrap) = bootstrap {
            if bundle_in(&mut tx, td).await?.is_none() {
                events.extend(put_bundle_in(&mut tx, &bootstrap).await?);
            }
        }
        events.extend(append_in(&mut tx, vec![Change::FederationChanged]).await?);
        self.commit(tx, events).await?;
        Ok(RelationshipRecord {
            last_fetch_at: 0,
            last_error: String::new(),
            ..relationship
        })
    }

    async fn update_relationship(
        &self,
        relationship: RelationshipRecord,
    ) -> Result<RelationshipRecord> {
        let mut tx = self.write_tx().await?;
        let td = &relationship.trust_domain;
        let stored = relationship_in(&mut tx, td)
            .await?
            .ok_or_else(|| not_found("no federation relationship", td))?;
        let (profile, endpoint_id, ca_bundle) = profile_columns(&relationship.profile);
        sqlx::query(
            "UPDATE federation_relationships SET bundle_endpoint_url = ?, profile = ?, \
             endpoint_spiffe_id = ?, ca_bundle = ? WHERE trust_domain = ?",
        )
        .bind(&relationship.bundle_endpoint_url)
        .bind(profile)
        .bind(endpoint_id)
        .bind(ca_bundle)
        .bind(td.as_str())
        .execute(&mut *tx)
        .await?;
        let events = append_in(&mut tx, vec![Change::FederationChanged]).await?;
        self.commit(tx, events).await?;
        Ok(RelationshipRecord {
            created_at: stored.created_at,
            last_fetch_at: stored.last_fetch_at,
            last_error: stored.last_error,
            ..relationship
        })
    }

    async fn delete_relationship(&self, td: &TrustDomain) -> Result<RelationshipRecord> {
        let mut tx = self.write_tx().await?;
        let stored = relationship_in(&mut tx, td)
            .await?
            .ok_or_else(|| not_found("no federation relationship", td))?;
        sqlx::query("DELETE FROM federation_relationships WHERE trust_domain = ?")
            .bind(td.as_str())
            .execute(&mut *tx)
            .await?;
        let events = append_in(&mut tx, vec![Change::FederationChanged]).await?;
        self.commit(tx, events).await?;
        Ok(stored)
    }

    async fn relationship(&self, td: &TrustDomain) -> Result<Option<RelationshipRecord>> {
        let mut tx = self.pool.begin().await?;
        let found = relationship_in(&mut tx, td).await?;
        tx.commit().await?;
        Ok(found)
    }

    async fn relationships(&self) -> Result<Vec<RelationshipRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {RELATIONSHIP_COLUMNS} FROM federation_relationships ORDER BY trust_domain"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(relationship_from_row).collect()
    }

    async fn record_fetch(&self, td: &TrustDomain, at: i64, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE federation_relationships SET last_fetch_at = ?, last_error = ? \
             WHERE trust_domain = ?",
        )
        .bind(at)
        .bind(error)
        .bind(td.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
