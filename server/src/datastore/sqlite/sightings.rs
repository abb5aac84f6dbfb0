//! What anomaly detectors have seen, on SQLite.

use async_trait::async_trait;
use sqlx::Row;

use super::rows::MAX_PARAMS;
use super::SqliteDataStore;
use crate::datastore::{Result, Sighting, SightingStore};

#[async_trait]
impl SightingStore for SqliteDataStore {
    async fn sightings(&self, kind: &str, subjects: &[String]) -> Result<Vec<Sighting>> {
        let mut out = Vec::new();
        for chunk in subjects.chunks(MAX_PARAMS - 1) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT subject, value, first_seen FROM anomaly_sightings \
                 WHERE kind = ? AND subject IN ({marks})"
            );
            let mut query = sqlx::query(&sql).bind(kind);
            for s in chunk {
                query = query.bind(s);
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push(Sighting {
                    subject: row.try_get("subject")?,
                    value: row.try_get("value")?,
                    first_seen: row.try_get("first_seen")?,
                });
            }
        }
        Ok(out)
    }

    async fn add_sightings(&self, kind: &str, rows: Vec<Sighting>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for chunk in rows.chunks(MAX_PARAMS / 4) {
            let values = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO anomaly_sightings (kind, subject, value, first_seen) \
                 VALUES {values} ON CONFLICT DO NOTHING"
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query
                    .bind(kind)
                    .bind(&r.subject)
                    .bind(&r.value)
                    .bind(r.first_seen);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
