//! What anomaly detectors have seen, on PostgreSQL (shared by the group:
//! a value one server saw is not new to another).

use async_trait::async_trait;
use sqlx::Row;

use super::PostgresDataStore;
use crate::datastore::{Result, Sighting, SightingStore};

#[async_trait]
impl SightingStore for PostgresDataStore {
    async fn sightings(&self, kind: &str, subjects: &[String]) -> Result<Vec<Sighting>> {
        sqlx::query(
            "SELECT subject, value, first_seen FROM anomaly_sightings \
             WHERE kind = $1 AND subject = ANY($2)",
        )
        .bind(kind)
        .bind(subjects)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(Sighting {
                subject: row.try_get("subject")?,
                value: row.try_get("value")?,
                first_seen: row.try_get("first_seen")?,
            })
        })
        .collect()
    }

    async fn add_sightings(&self, kind: &str, rows: Vec<Sighting>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let subjects: Vec<&str> = rows.iter().map(|r| r.subject.as_str()).collect();
        let values: Vec<&str> = rows.iter().map(|r| r.value.as_str()).collect();
        let first_seen: Vec<i64> = rows.iter().map(|r| r.first_seen).collect();
        sqlx::query(
            "INSERT INTO anomaly_sightings (kind, subject, value, first_seen) \
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::bigint[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(kind)
        .bind(subjects)
        .bind(values)
        .bind(first_seen)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
