//! What the datastore keeps of the CA: the bundle's sequence and the
//! fingerprint of the authorities it was numbered for.

use async_trait::async_trait;

use super::SqliteDataStore;
use crate::datastore::{AuthorityStore, DataStoreError, Result};

#[async_trait]
impl AuthorityStore for SqliteDataStore {
    async fn sync_bundle_sequence(&self, fingerprint: &str) -> Result<u64> {
        // The sequence moves only when the fingerprint does.
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO bundle_state (id, sequence, fingerprint) VALUES (1, 1, ?) \
             ON CONFLICT (id) DO UPDATE SET sequence = bundle_state.sequence + 1, \
             fingerprint = excluded.fingerprint \
             WHERE bundle_state.fingerprint <> excluded.fingerprint",
        )
        .bind(fingerprint)
        .execute(&mut *tx)
        .await?;
        let n: i64 = sqlx::query_scalar("SELECT sequence FROM bundle_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        self.commit(tx, Vec::new()).await?;
        u64::try_from(n).map_err(|_| DataStoreError::Corrupt("negative bundle sequence".into()))
    }
}
