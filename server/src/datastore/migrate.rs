//! `signet-server datastore migrate`: a single-server SQLite install moved
//! to PostgreSQL whole — join tokens, agents, entries, every authority and
//! the bundle's sequence, issued serials and revocations, CRLs, servers,
//! federated bundles and relationships, and the event log with its
//! revision, so agents resume where they were.
//! One read snapshot of the SQLite file, one PostgreSQL transaction; a
//! target that holds anything is refused.

use std::collections::BTreeMap;

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::Row;

use super::{DataStoreError, Result};

/// How a column is read from SQLite and sent to PostgreSQL.
#[derive(Clone, Copy)]
enum Col {
    Text,
    OptText,
    Int,
    /// PostgreSQL INTEGER (SQLite's integers are all 64-bit).
    Int4,
    Bool,
    OptBytes,
}

impl Col {
    fn pg_array(self) -> &'static str {
        match self {
            Col::Text | Col::OptText => "text[]",
            Col::Int => "bigint[]",
            Col::Int4 => "integer[]",
            Col::Bool => "boolean[]",
            Col::OptBytes => "bytea[]",
        }
    }
}

/// Every table, in an order foreign to nothing (there are no foreign keys).
const TABLES: &[(&str, &[(&str, Col)])] = &[
    (
        "join_tokens",
        &[("token_sha256", Col::Text), ("expires_at", Col::Int)],
    ),
    (
        "agents",
        &[
            ("spiffe_id", Col::Text),
            ("attestation_type", Col::Text),
            ("serial", Col::Text),
            ("expires_at", Col::Int),
            ("banned", Col::Bool),
            ("attested_at", Col::Int),
            ("selectors", Col::Text),
        ],
    ),
    (
        "entries",
        &[
            ("id", Col::Text),
            ("spiffe_id", Col::Text),
            ("parent_id", Col::Text),
            ("selectors", Col::Text),
            ("x509_svid_ttl", Col::Int),
            ("jwt_svid_ttl", Col::Int),
            ("dns_names", Col::Text),
            ("hint", Col::Text),
            ("admin", Col::Bool),
            ("downstream", Col::Bool),
            ("revision", Col::Int),
            ("created_at", Col::Int),
            ("node", Col::Bool),
            ("federates_with", Col::Text),
        ],
    ),
    (
        "bundle_state",
        &[
            ("id", Col::Int4),
            ("sequence", Col::Int),
            ("fingerprint", Col::Text),
        ],
    ),
    (
        "issued_x509",
        &[
            ("serial", Col::Text),
            ("spiffe_id", Col::Text),
            ("authority_id", Col::Text),
            ("expires_at", Col::Int),
        ],
    ),
    (
        "issued_jwt",
        &[
            ("jti", Col::Text),
            ("spiffe_id", Col::Text),
            ("kid", Col::Text),
            ("expires_at", Col::Int),
        ],
    ),
    (
        "revocations",
        &[
            ("kind", Col::Text),
            ("id", Col::Text),
            ("authority_id", Col::Text),
            ("reason", Col::Text),
            ("revoked_at", Col::Int),
            ("expires_at", Col::Int),
        ],
    ),
    (
        "events",
        &[
            ("id", Col::Int),
            ("kind", Col::Text),
            ("payload", Col::Text),
        ],
    ),
    (
        "authorities",
        &[
            ("kind", Col::Text),
            ("id", Col::Text),
            ("server_id", Col::Text),
            ("state", Col::Text),
            ("tainted", Col::Bool),
            ("not_before", Col::Int),
            ("not_after", Col::Int),
            ("certificate", Col::OptBytes),
            ("public_key", Col::OptText),
            ("upstream_root", Col::OptBytes),
            ("upstream_chain", Col::OptBytes),
            ("position", Col::Int4),
        ],
    ),
    (
        "revoked_authorities",
        &[("kind", Col::Text), ("id", Col::Text)],
    ),
    (
        "servers",
        &[
            ("id", Col::Text),
            ("hostname", Col::Text),
            ("address", Col::Text),
            ("started_at", Col::Int),
            ("last_seen", Col::Int),
        ],
    ),
    (
        "crls",
        &[
            ("authority_id", Col::Text),
            ("server_id", Col::Text),
            ("der", Col::OptBytes),
        ],
    ),
    (
        "federated_bundles",
        &[
            ("trust_domain", Col::Text),
            ("document", Col::Text),
            ("sequence", Col::Int),
            ("source", Col::Text),
            ("updated_at", Col::Int),
        ],
    ),
    (
        "federation_relationships",
        &[
            ("trust_domain", Col::Text),
            ("bundle_endpoint_url", Col::Text),
            ("profile", Col::Text),
            ("endpoint_spiffe_id", Col::Text),
            ("ca_bundle", Col::Text),
            ("created_at", Col::Int),
            ("last_fetch_at", Col::Int),
            ("last_error", Col::Text),
        ],
    ),
    (
        "audit_log",
        &[
            ("seq", Col::Int),
            ("record", Col::Text),
            ("hash", Col::Text),
        ],
    ),
    (
        "audit_checkpoints",
        &[
            ("seq", Col::Int),
            ("hash", Col::Text),
            ("time_ms", Col::Int),
            ("server_id", Col::Text),
            ("key_id", Col::Text),
            ("public_key", Col::Text),
            ("signature", Col::Text),
        ],
    ),
    (
        "anomaly_sightings",
        &[
            ("kind", Col::Text),
            ("subject", Col::Text),
            ("value", Col::Text),
            ("first_seen", Col::Int),
        ],
    ),
    (
        "policies",
        &[
            ("name", Col::Text),
            ("text", Col::Text),
            ("created_at", Col::Int),
            ("updated_at", Col::Int),
        ],
    ),
];

/// Rows per INSERT: arrays of this many elements per column.
const CHUNK: usize = 10_000;

/// One column's values, typed for binding as an array.
enum Values {
    Text(Vec<String>),
    OptText(Vec<Option<String>>),
    Int(Vec<i64>),
    Int4(Vec<i32>),
    Bool(Vec<bool>),
    OptBytes(Vec<Option<Vec<u8>>>),
}

fn corrupt(table: &str, column: &str, e: impl std::fmt::Display) -> DataStoreError {
    DataStoreError::Corrupt(format!("{table}.{column}: {e}"))
}

fn read_column(
    rows: &[sqlx::sqlite::SqliteRow],
    table: &str,
    name: &str,
    col: Col,
) -> Result<Values> {
    let get = |e: sqlx::Error| corrupt(table, name, e);
    Ok(match col {
        Col::Text => Values::Text(
            rows.iter()
                .map(|r| r.try_get(name).map_err(get))
                .collect::<Result<_>>()?,
        ),
        Col::OptText => Values::OptText(
            rows.iter()
                .map(|r| r.try_get(name).map_err(get))
                .collect::<Result<_>>()?,
        ),
        Col::Int => Values::Int(
            rows.iter()
                .map(|r| r.try_get(name).map_err(get))
                .collect::<Result<_>>()?,
        ),
        Col::Int4 => Values::Int4(
            rows.iter()
                .map(|r| {
                    let v: i64 = r.try_get(name).map_err(get)?;
                    i32::try_from(v).map_err(|e| corrupt(table, name, e))
                })
                .collect::<Result<_>>()?,
        ),
        Col::Bool => Values::Bool(
            rows.iter()
                .map(|r| r.try_get(name).map_err(get))
                .collect::<Result<_>>()?,
        ),
        Col::OptBytes => Values::OptBytes(
            rows.iter()
                .map(|r| r.try_get(name).map_err(get))
                .collect::<Result<_>>()?,
        ),
    })
}

/// What was copied: rows per table, and the revision the log stands at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    pub rows: BTreeMap<&'static str, u64>,
    pub revision: i64,
}

/// The tables of `target` that hold rows, with their counts.
async fn non_empty(target: &PgPool) -> Result<Vec<(String, i64)>> {
    let mut found = Vec::new();
    for (table, _) in TABLES {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(target)
            .await?;
        if n > 0 {
            found.push(((*table).to_owned(), n));
        }
    }
    let revision: i64 = sqlx::query_scalar("SELECT value FROM revision WHERE id = 1")
        .fetch_one(target)
        .await?;
    if revision > 0 {
        found.push(("revision".to_owned(), revision));
    }
    Ok(found)
}

/// Copies everything in `source` (a migrated SQLite store) to `target` (a
/// migrated, empty PostgreSQL store).
pub async fn sqlite_to_postgres(source: &SqlitePool, target: &PgPool) -> Result<Migrated> {
    let full = non_empty(target).await?;
    if !full.is_empty() {
        let what: Vec<String> = full.iter().map(|(t, n)| format!("{t}: {n}")).collect();
        return Err(DataStoreError::FailedPrecondition(format!(
            "the target datastore is not empty ({}); migrate into a new, empty database",
            what.join(", ")
        )));
    }
    // One snapshot of the file for every table.
    let mut read = source.begin().await?;
    let mut write = target.begin().await?;
    let mut migrated = Migrated::default();
    for (table, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let rows = sqlx::query(&format!("SELECT {} FROM {table}", names.join(", ")))
            .fetch_all(&mut *read)
            .await?;
        migrated.rows.insert(table, rows.len() as u64);
        let arrays: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (_, col))| format!("${}::{}", i + 1, col.pg_array()))
            .collect();
        let sql = format!(
            "INSERT INTO {table} ({}) SELECT * FROM UNNEST({})",
            names.join(", "),
            arrays.join(", ")
        );
        for chunk in rows.chunks(CHUNK) {
            let mut query = sqlx::query(&sql);
            for (name, col) in columns.iter() {
                query = match read_column(chunk, table, name, *col)? {
                    Values::Text(v) => query.bind(v),
                    Values::OptText(v) => query.bind(v),
                    Values::Int(v) => query.bind(v),
                    Values::Int4(v) => query.bind(v),
                    Values::Bool(v) => query.bind(v),
                    Values::OptBytes(v) => query.bind(v),
                };
            }
            query.execute(&mut *write).await?;
        }
    }
    let revision: i64 = sqlx::query_scalar("SELECT value FROM revision WHERE id = 1")
        .fetch_one(&mut *read)
        .await?;
    sqlx::query("UPDATE revision SET value = $1 WHERE id = 1")
        .bind(revision)
        .execute(&mut *write)
        .await?;
    migrated.revision = revision;
    read.rollback().await?;
    write.commit().await?;
    Ok(migrated)
}

/// Opens `from` (SQLite) and `to` (PostgreSQL, with `settings`) and copies.
pub async fn run(
    from: &super::DatastoreUrl,
    to: &super::DatastoreUrl,
    settings: &super::PostgresSettings,
) -> Result<Migrated> {
    use super::{Connection, DatastoreUrl, PostgresDataStore, SqliteDataStore};
    let DatastoreUrl::Sqlite(path) = from else {
        return Err(DataStoreError::InvalidArgument(format!(
            "--from must name the SQLite file (sqlite://PATH), not {from}"
        )));
    };
    let DatastoreUrl::Postgres(url) = to else {
        return Err(DataStoreError::InvalidArgument(format!(
            "--to must name a PostgreSQL database (postgres://USER@HOST/DB), not {to}"
        )));
    };
    if !tokio::fs::try_exists(path).await.unwrap_or(false) {
        return Err(DataStoreError::NotFound(format!(
            "SQLite datastore {}",
            path.display()
        )));
    }
    let source = SqliteDataStore::open(path).await?;
    let target = PostgresDataStore::open(
        settings.connect_options(url).await?,
        super::postgres::PoolSettings {
            max_connections: 2,
            acquire_timeout: settings.connect_timeout,
        },
    )
    .await?;
    let done = sqlite_to_postgres(source.pool(), target.pool()).await;
    source.close().await;
    target.close().await;
    done
}

#[cfg(test)]
mod tests;
