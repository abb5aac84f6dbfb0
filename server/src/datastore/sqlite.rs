//! The SQLite datastore: one file in the data dir, WAL journal, full fsync,
//! foreign keys, a busy timeout so concurrent writers wait instead of failing.
//!
//! Every write goes through one connection of its own (`writer`), so
//! writers in this process queue fairly on the pool instead of meeting in
//! SQLite's busy handler, which sleeps for milliseconds between retries
//! (that left the cores idle while signing batches waited to be recorded).
//! Reads use a pool of their own and, under WAL, never wait for the writer.
//!
//! Every transaction that writes starts with `BEGIN IMMEDIATE`. A deferred
//! transaction that reads first holds a WAL read snapshot; if another writer
//! commits meanwhile, its upgrade to a writer fails at once with SQLITE_BUSY
//! ("database is locked", BUSY_SNAPSHOT) without waiting on the busy timeout.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use signet_core::spiffe_id::RESERVED_PATH;
use signet_core::{RegistrationEntry, Selector, SpiffeId, TrustDomain};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{
    AgentRecord, DataStore, DataStoreError, EntryFilter, EntryRecord, IssuedX509, NewEntry, Result,
    Revocation, RevokedKind,
};

/// The schema, compiled into the binary so a fresh machine needs no files.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        2,
        "bundle_state",
        include_str!("../../migrations/0002_bundle_state.sql"),
    ),
    (
        3,
        "revocation",
        include_str!("../../migrations/0003_revocation.sql"),
    ),
    (
        4,
        "node_alias",
        include_str!("../../migrations/0004_node_alias.sql"),
    ),
    (
        5,
        "entries_by_parent_order",
        include_str!("../../migrations/0005_entries_by_parent_order.sql"),
    ),
    (
        6,
        "join_token_hashes",
        include_str!("../../migrations/0006_join_token_hashes.sql"),
    ),
];

#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> BoxFuture<'static, std::result::Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, desc, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*desc),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

fn backend(e: impl std::fmt::Display) -> DataStoreError {
    DataStoreError::Backend(e.to_string())
}

/// Creates the database file 0600 if missing, and brings an existing file
/// (and its WAL and shared-memory files, which SQLite creates with the
/// database file's mode) to 0600.
async fn restrict_files(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |p: &Path, e: std::io::Error| DataStoreError::Backend(format!("{}: {e}", p.display()));
    let created = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await;
    match created {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(path, e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        match tokio::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&file, e)),
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct SqliteDataStore {
    /// Readers.
    pool: SqlitePool,
    /// The one connection every write uses.
    writer: SqlitePool,
    /// Issued serials on their way to the recorder (see [`record_loop`]).
    records: mpsc::UnboundedSender<PendingRecords>,
}

/// Serials of one signing batch, and who waits for their commit.
#[derive(Debug)]
struct PendingRecords {
    rows: Vec<IssuedX509>,
    done: oneshot::Sender<Result<()>>,
}

/// Rows one group commit takes at most.
const GROUP_ROWS: usize = 4096;

/// Group commit of issued serials: whatever batches queued while the last
/// transaction was committing go into the next one together, so eight
/// signing batches in flight cost about one sync to disk, not eight. A
/// group never waits for more to arrive; a failed transaction fails every
/// batch in it (none of their SVIDs is handed out).
async fn record_loop(writer: SqlitePool, mut queue: mpsc::UnboundedReceiver<PendingRecords>) {
    while let Some(first) = queue.recv().await {
        let mut rows = first.rows.len();
        let mut group = vec![first];
        while rows < GROUP_ROWS {
            match queue.try_recv() {
                Ok(more) => {
                    rows += more.rows.len();
                    group.push(more);
                }
                Err(_) => break,
            }
        }
        let all: Vec<&IssuedX509> = group.iter().flat_map(|p| &p.rows).collect();
        let result = insert_issued(&writer, &all).await;
        for pending in group {
            let _ = pending.done.send(result.clone());
        }
    }
}

/// Inserts `rows` in one transaction, in multi-row statements within
/// SQLite's bound on parameters.
async fn insert_issued(writer: &SqlitePool, rows: &[&IssuedX509]) -> Result<()> {
    let mut tx = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(backend)?;
    for chunk in rows.chunks(MAX_PARAMS / 4) {
        let mut sql = String::from(
            "INSERT OR REPLACE INTO issued_x509 (serial, spiffe_id, authority_id, expires_at) VALUES ",
        );
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 {
                "(?, ?, ?, ?)"
            } else {
                ", (?, ?, ?, ?)"
            });
        }
        let mut query = sqlx::query(&sql);
        for r in chunk {
            query = query
                .bind(&r.serial)
                .bind(r.spiffe_id.to_string())
                .bind(&r.authority_id)
                .bind(r.expires_at);
        }
        query.execute(&mut *tx).await.map_err(backend)?;
    }
    tx.commit().await.map_err(backend)
}

impl SqliteDataStore {
    /// Opens (creating if needed) the database file and applies migrations.
    /// The file is 0600: it holds the registration and who was attested.
    pub async fn open(path: &Path) -> Result<Self> {
        restrict_files(path).await?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Rows cross from SQLite's thread to the async side through a
            // channel; at the default 50 a 10k-entry snapshot query spent
            // most of its time switching threads on a full channel.
            .row_buffer_size(1024);
        let open = |connections| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .connect_with(options.clone())
        };
        let cannot_open = |e| DataStoreError::Backend(format!("cannot open {path:?}: {e}"));
        let writer = open(1).await.map_err(cannot_open)?;
        let migrator = Migrator::new(Embedded).await.map_err(backend)?;
        migrator
            .run(&writer)
            .await
            .map_err(|e| DataStoreError::Backend(format!("migrating {path:?}: {e}")))?;
        let pool = open(4).await.map_err(cannot_open)?;
        let (records, queue) = mpsc::unbounded_channel();
        tokio::spawn(record_loop(writer.clone(), queue));
        Ok(Self {
            pool,
            writer,
            records,
        })
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// A transaction that holds the write lock from its first statement
    /// (waiting for it up to the busy timeout); see the module comment.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }

    /// `PRAGMA integrity_check`: `ok` when the file is sound.
    pub async fn integrity_check(&self) -> Result<String> {
        sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
    }
}

async fn bump_revision(tx: &mut Transaction<'_, Sqlite>, by: u64) -> Result<u64> {
    let by = i64::try_from(by).map_err(|_| backend("revision step too large"))?;
    let value: i64 =
        sqlx::query_scalar("UPDATE revision SET value = value + ? WHERE id = 1 RETURNING value")
            .bind(by)
            .fetch_one(&mut **tx)
            .await
            .map_err(backend)?;
    u64::try_from(value).map_err(|_| DataStoreError::Corrupt("negative revision".into()))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| DataStoreError::Corrupt(e.to_string()))
}

fn selectors_json(selectors: &[Selector]) -> Result<String> {
    to_json(&selectors.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

fn parse_selectors(json: &str) -> Result<Vec<Selector>> {
    let raw: Vec<String> =
        serde_json::from_str(json).map_err(|e| DataStoreError::Corrupt(e.to_string()))?;
    raw.iter()
        .map(|s| Selector::parse(s).map_err(|e| DataStoreError::Corrupt(e.to_string())))
        .collect()
}

fn parse_id(s: &str) -> Result<SpiffeId> {
    SpiffeId::parse(s).map_err(|e| DataStoreError::Corrupt(format!("{s:?}: {e}")))
}

fn ttl_column(ttl: Option<Duration>) -> i64 {
    ttl.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ttl_from_column(secs: i64) -> Option<Duration> {
    u64::try_from(secs)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

fn agent_from_row(row: &SqliteRow) -> Result<AgentRecord> {
    let get = |e: sqlx::Error| backend(e);
    Ok(AgentRecord {
        spiffe_id: parse_id(&row.try_get::<String, _>("spiffe_id").map_err(get)?)?,
        attestation_type: row.try_get("attestation_type").map_err(get)?,
        serial: row.try_get("serial").map_err(get)?,
        expires_at: row.try_get("expires_at").map_err(get)?,
        banned: row.try_get("banned").map_err(get)?,
        attested_at: row.try_get("attested_at").map_err(get)?,
        selectors: parse_selectors(&row.try_get::<String, _>("selectors").map_err(get)?)?,
    })
}

fn entry_from_row(row: &SqliteRow) -> Result<EntryRecord> {
    let get = |e: sqlx::Error| backend(e);
    let dns: String = row.try_get("dns_names").map_err(get)?;
    let revision: i64 = row.try_get("revision").map_err(get)?;
    Ok(EntryRecord {
        entry: RegistrationEntry {
            id: row.try_get("id").map_err(get)?,
            spiffe_id: parse_id(&row.try_get::<String, _>("spiffe_id").map_err(get)?)?,
            parent_id: parse_id(&row.try_get::<String, _>("parent_id").map_err(get)?)?,
            selectors: parse_selectors(&row.try_get::<String, _>("selectors").map_err(get)?)?,
            x509_svid_ttl: ttl_from_column(row.try_get("x509_svid_ttl").map_err(get)?),
            jwt_svid_ttl: ttl_from_column(row.try_get("jwt_svid_ttl").map_err(get)?),
            dns_names: serde_json::from_str(&dns)
                .map_err(|e| DataStoreError::Corrupt(e.to_string()))?,
            hint: row.try_get("hint").map_err(get)?,
            admin: row.try_get("admin").map_err(get)?,
            downstream: row.try_get("downstream").map_err(get)?,
            revision: u64::try_from(revision).unwrap_or(0),
        },
        created_at: row.try_get("created_at").map_err(get)?,
        node: row.try_get("node").map_err(get)?,
    })
}

fn revocation_from_row(row: &SqliteRow) -> Result<Revocation> {
    let get = |e: sqlx::Error| backend(e);
    let kind: String = row.try_get("kind").map_err(get)?;
    Ok(Revocation {
        kind: match kind.as_str() {
            "x509" => RevokedKind::X509,
            "jwt" => RevokedKind::Jwt,
            other => {
                return Err(DataStoreError::Corrupt(format!(
                    "unknown revocation kind {other:?}"
                )))
            }
        },
        id: row.try_get("id").map_err(get)?,
        authority_id: row.try_get("authority_id").map_err(get)?,
        reason: row.try_get("reason").map_err(get)?,
        revoked_at: row.try_get("revoked_at").map_err(get)?,
        expires_at: row.try_get("expires_at").map_err(get)?,
    })
}

/// SQLite's default bound on parameters per statement.
const MAX_PARAMS: usize = 999;

const ENTRY_COLUMNS: &str = "id, spiffe_id, parent_id, selectors, x509_svid_ttl, jwt_svid_ttl, \
     dns_names, hint, admin, downstream, revision, created_at, node";
/// How many columns `ENTRY_COLUMNS` names, counted from it when compiling.
const ENTRY_COLUMN_COUNT: usize = commas(ENTRY_COLUMNS) + 1;

const fn commas(s: &str) -> usize {
    let bytes = s.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b',' {
            n += 1;
        }
        i += 1;
    }
    n
}
/// One parent's entries in creation order, read along the
/// `entries_parent_created` index (no sort, so rows stream as they are read).
static ENTRIES_BY_PARENT: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE parent_id = ? ORDER BY created_at, id")
});
const AGENT_COLUMNS: &str =
    "spiffe_id, attestation_type, serial, expires_at, banned, attested_at, selectors";

impl SqliteDataStore {
    async fn agent_in(
        tx: &mut Transaction<'_, Sqlite>,
        id: &SpiffeId,
    ) -> Result<Option<AgentRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE spiffe_id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Stores `entry` in `tx` unless it duplicates a stored one; bumps the
    /// revision once for it. A refused entry leaves `tx` usable (SQLite undoes
    /// only the failed statement; a duplicate id may leave a revision gap).
    /// Stored entries whose SPIFFE ID is one of `spiffe_ids`.
    async fn entries_with_spiffe_ids_in(
        tx: &mut Transaction<'_, Sqlite>,
        spiffe_ids: &[String],
    ) -> Result<Vec<EntryRecord>> {
        let mut out = Vec::new();
        for chunk in spiffe_ids.chunks(MAX_PARAMS) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE spiffe_id IN ({marks})");
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&mut **tx).await.map_err(backend)? {
                out.push(entry_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// Which of `ids` are stored entry ids.
    async fn stored_ids_in(
        tx: &mut Transaction<'_, Sqlite>,
        ids: &[&str],
    ) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        for chunk in ids.chunks(MAX_PARAMS) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("SELECT id FROM entries WHERE id IN ({marks})");
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            out.extend(query.fetch_all(&mut **tx).await.map_err(backend)?);
        }
        Ok(out)
    }

    /// Inserts `records` (revisions assigned) in one statement.
    async fn insert_entries_in(
        tx: &mut Transaction<'_, Sqlite>,
        records: &[&EntryRecord],
    ) -> Result<()> {
        let row = format!("({})", vec!["?"; ENTRY_COLUMN_COUNT].join(", "));
        let sql = format!(
            "INSERT INTO entries ({ENTRY_COLUMNS}) VALUES {}",
            vec![row.as_str(); records.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for rec in records {
            let e = &rec.entry;
            query = query
                .bind(e.id.clone())
                .bind(e.spiffe_id.to_string())
                .bind(e.parent_id.to_string())
                .bind(selectors_json(&e.selectors)?)
                .bind(ttl_column(e.x509_svid_ttl))
                .bind(ttl_column(e.jwt_svid_ttl))
                .bind(to_json(&e.dns_names)?)
                .bind(e.hint.clone())
                .bind(e.admin)
                .bind(e.downstream)
                .bind(i64::try_from(e.revision).unwrap_or(i64::MAX))
                .bind(rec.created_at)
                .bind(rec.node);
        }
        query.execute(&mut **tx).await.map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                DataStoreError::AlreadyExists(match records {
                    [one] => format!("entry id {} already exists", one.entry.id),
                    _ => "an entry id of the batch already exists".into(),
                })
            }
            other => backend(other),
        })?;
        Ok(())
    }

    async fn insert_entry_in(
        tx: &mut Transaction<'_, Sqlite>,
        mut entry: RegistrationEntry,
        created_at: i64,
        node: bool,
    ) -> Result<EntryRecord> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE spiffe_id = ? AND parent_id = ?"
        ))
        .bind(entry.spiffe_id.to_string())
        .bind(entry.parent_id.to_string())
        .fetch_all(&mut **tx)
        .await
        .map_err(backend)?;
        for row in &rows {
            let existing = entry_from_row(row)?;
            if existing.entry.selectors == entry.selectors {
                return Err(DataStoreError::AlreadyExists(format!(
                    "an entry with this SPIFFE ID, parent ID and selectors already exists (id {})",
                    existing.entry.id
                )));
            }
        }
        entry.revision = bump_revision(tx, 1).await?;
        let record = EntryRecord {
            entry,
            created_at,
            node,
        };
        Self::insert_entries_in(tx, &[&record]).await?;
        Ok(record)
    }

    async fn insert_entry(
        &self,
        entry: RegistrationEntry,
        created_at: i64,
        node: bool,
    ) -> Result<EntryRecord> {
        let mut tx = self.write_tx().await?;
        let rec = Self::insert_entry_in(&mut tx, entry, created_at, node).await?;
        tx.commit().await.map_err(backend)?;
        Ok(rec)
    }

    /// Inserts or replaces the agent's record; refuses a banned ID (the
    /// caller's transaction is then dropped, which rolls it back).
    async fn upsert_agent_in(
        tx: &mut Transaction<'_, Sqlite>,
        agent: AgentRecord,
    ) -> Result<AgentRecord> {
        if let Some(existing) = Self::agent_in(tx, &agent.spiffe_id).await? {
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
        .await
        .map_err(backend)?;
        bump_revision(tx, 1).await?;
        Ok(AgentRecord {
            banned: false,
            ..agent
        })
    }
}

#[async_trait]
impl DataStore for SqliteDataStore {
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
            Err(e) => Err(backend(e)),
        }
    }

    async fn join_token(&self, token_sha256: &str) -> Result<Option<(String, i64)>> {
        let row =
            sqlx::query("SELECT token_sha256, expires_at FROM join_tokens WHERE token_sha256 = ?")
                .bind(token_sha256)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.map(|r| {
            Ok((
                r.try_get("token_sha256").map_err(backend)?,
                r.try_get("expires_at").map_err(backend)?,
            ))
        })
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
        .await
        .map_err(backend)?;
        let Some(expires_at) = expires_at else {
            return Err(DataStoreError::JoinTokenNotFound);
        };
        if expires_at <= now {
            tx.rollback().await.map_err(backend)?;
            return Err(DataStoreError::JoinTokenExpired);
        }
        let agent = Self::upsert_agent_in(&mut tx, agent).await?;
        tx.commit().await.map_err(backend)?;
        Ok(agent)
    }

    async fn attest_agent(&self, agent: AgentRecord) -> Result<AgentRecord> {
        let mut tx = self.write_tx().await?;
        let agent = Self::upsert_agent_in(&mut tx, agent).await?;
        tx.commit().await.map_err(backend)?;
        Ok(agent)
    }

    async fn get_agent(&self, id: &SpiffeId) -> Result<Option<AgentRecord>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let agent = Self::agent_in(&mut tx, id).await?;
        tx.commit().await.map_err(backend)?;
        Ok(agent)
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents ORDER BY spiffe_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn update_agent_svid(&self, id: &SpiffeId, serial: &str, expires_at: i64) -> Result<()> {
        let done = sqlx::query("UPDATE agents SET serial = ?, expires_at = ? WHERE spiffe_id = ?")
            .bind(serial)
            .bind(expires_at)
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(DataStoreError::NotFound(format!("agent {id}")));
        }
        Ok(())
    }

    async fn evict_agent(&self, id: &SpiffeId) -> Result<AgentRecord> {
        let mut tx = self.write_tx().await?;
        let agent = Self::agent_in(&mut tx, id)
            .await?
            .ok_or_else(|| DataStoreError::NotFound(format!("agent {id}")))?;
        sqlx::query("DELETE FROM agents WHERE spiffe_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        bump_revision(&mut tx, 1).await?;
        tx.commit().await.map_err(backend)?;
        Ok(agent)
    }

    async fn ban_agent(&self, id: &SpiffeId) -> Result<AgentRecord> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE agents SET banned = TRUE WHERE spiffe_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(DataStoreError::NotFound(format!("agent {id}")));
        }
        let agent = Self::agent_in(&mut tx, id)
            .await?
            .ok_or_else(|| DataStoreError::NotFound(format!("agent {id}")))?;
        bump_revision(&mut tx, 1).await?;
        tx.commit().await.map_err(backend)?;
        Ok(agent)
    }

    async fn create_entry(&self, entry: RegistrationEntry, created_at: i64) -> Result<EntryRecord> {
        self.insert_entry(entry, created_at, false).await
    }

    async fn create_node_alias(
        &self,
        entry: RegistrationEntry,
        created_at: i64,
    ) -> Result<EntryRecord> {
        self.insert_entry(entry, created_at, true).await
    }

    async fn create_entries(
        &self,
        entries: Vec<NewEntry>,
        created_at: i64,
    ) -> Result<Vec<Result<EntryRecord>>> {
        let mut tx = self.write_tx().await?;
        // What is stored already, read in a few statements rather than one
        // per entry (each statement is a hand-off to SQLite's thread).
        let spiffe_ids: Vec<String> = entries
            .iter()
            .map(|e| e.entry.spiffe_id.to_string())
            .collect();
        let mut same_ids: HashMap<(String, String), Vec<(Vec<Selector>, String)>> = HashMap::new();
        for stored in Self::entries_with_spiffe_ids_in(&mut tx, &spiffe_ids).await? {
            let e = stored.entry;
            same_ids
                .entry((e.spiffe_id.to_string(), e.parent_id.to_string()))
                .or_default()
                .push((e.selectors, e.id));
        }
        let ids: Vec<&str> = entries.iter().map(|e| e.entry.id.as_str()).collect();
        let mut taken = Self::stored_ids_in(&mut tx, &ids).await?;
        // Each entry is checked against the store and the batch before it.
        let mut verdicts: Vec<Result<NewEntry>> = Vec::with_capacity(entries.len());
        for (new, spiffe_id) in entries.into_iter().zip(spiffe_ids) {
            let key = (spiffe_id, new.entry.parent_id.to_string());
            let twins = same_ids.entry(key).or_default();
            if let Some((_, id)) = twins.iter().find(|(sel, _)| *sel == new.entry.selectors) {
                verdicts.push(Err(DataStoreError::AlreadyExists(format!(
                    "an entry with this SPIFFE ID, parent ID and selectors already exists (id {id})"
                ))));
                continue;
            }
            if !taken.insert(new.entry.id.clone()) {
                verdicts.push(Err(DataStoreError::AlreadyExists(format!(
                    "entry id {} already exists",
                    new.entry.id
                ))));
                continue;
            }
            twins.push((new.entry.selectors.clone(), new.entry.id.clone()));
            verdicts.push(Ok(new));
        }
        // One revision each, in batch order, from one bump.
        let count = verdicts.iter().filter(|v| v.is_ok()).count() as u64;
        let mut next_revision = match count {
            0 => 0,
            // The bump returns the last of the `n` new revisions.
            n => bump_revision(&mut tx, n).await? - n + 1,
        };
        let out: Vec<Result<EntryRecord>> = verdicts
            .into_iter()
            .map(|verdict| {
                verdict.map(|new| {
                    let record = EntryRecord {
                        entry: RegistrationEntry {
                            revision: next_revision,
                            ..new.entry
                        },
                        created_at,
                        node: new.node,
                    };
                    next_revision += 1;
                    record
                })
            })
            .collect();
        let stored: Vec<&EntryRecord> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
        for chunk in stored.chunks(MAX_PARAMS / ENTRY_COLUMN_COUNT) {
            Self::insert_entries_in(&mut tx, chunk).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    async fn get_entry(&self, id: &str) -> Result<Option<EntryRecord>> {
        let row = sqlx::query(&format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn get_entries(&self, ids: &[&str]) -> Result<Vec<EntryRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_PARAMS) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id IN ({marks})");
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await.map_err(backend)? {
                out.push(entry_from_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn entries_with_reserved_ids(&self, td: &TrustDomain) -> Result<Vec<EntryRecord>> {
        // An exact prefix comparison (LIKE would take `_` in a trust domain
        // for a wildcard); the entries_spiffe_id index is not used, but
        // this runs once, at start.
        let exact = format!("spiffe://{td}{RESERVED_PATH}");
        let below = format!("{exact}/");
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE spiffe_id = ? OR substr(spiffe_id, 1, length(?)) = ? ORDER BY created_at, id"
        ))
        .bind(&exact)
        .bind(&below)
        .bind(&below)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<EntryRecord>> {
        let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE 1 = 1");
        if filter.spiffe_id.is_some() {
            sql.push_str(" AND spiffe_id = ?");
        }
        if filter.parent_id.is_some() {
            sql.push_str(" AND parent_id = ?");
        }
        if filter.node.is_some() {
            sql.push_str(" AND node = ?");
        }
        sql.push_str(" ORDER BY created_at, id");
        let mut query = sqlx::query(&sql);
        if let Some(id) = &filter.spiffe_id {
            query = query.bind(id.to_string());
        }
        if let Some(id) = &filter.parent_id {
            query = query.bind(id.to_string());
        }
        if let Some(node) = filter.node {
            query = query.bind(node);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let rec = entry_from_row(row)?;
            if filter
                .selectors
                .iter()
                .all(|s| rec.entry.selectors.contains(s))
            {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn entries_by_parent_streamed(&self, parent: &SpiffeId) -> BoxStream<'_, Result<EntryRecord>> {
        sqlx::query(ENTRIES_BY_PARENT.as_str())
            .bind(parent.to_string())
            .fetch(&self.pool)
            .map(|row| row.map_err(backend).and_then(|row| entry_from_row(&row)))
            .boxed()
    }

    async fn delete_entry(&self, id: &str) -> Result<EntryRecord> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(&format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let Some(row) = row else {
            return Err(DataStoreError::NotFound(format!("entry {id}")));
        };
        let rec = entry_from_row(&row)?;
        sqlx::query("DELETE FROM entries WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        bump_revision(&mut tx, 1).await?;
        tx.commit().await.map_err(backend)?;
        Ok(rec)
    }

    async fn count_entries(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM entries")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn current_revision(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT value FROM revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

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
        .await
        .map_err(backend)?;
        let n: i64 = sqlx::query_scalar("SELECT sequence FROM bundle_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        u64::try_from(n).map_err(|_| DataStoreError::Corrupt("negative bundle sequence".into()))
    }

    async fn prune_join_tokens(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM join_tokens WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn bump_revision(&self, by: u64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let rev = bump_revision(&mut tx, by).await?;
        tx.commit().await.map_err(backend)?;
        Ok(rev)
    }

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
        }])
        .await
    }

    async fn record_x509_many(&self, issued: Vec<IssuedX509>) -> Result<()> {
        if issued.is_empty() {
            return Ok(());
        }
        let stopped = || DataStoreError::Backend("the serial recorder has stopped".into());
        let (done, committed) = oneshot::channel();
        self.records
            .send(PendingRecords { rows: issued, done })
            .map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
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
        .await
        .map_err(backend)?;
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
            .await
            .map_err(backend)?;
        let Some(row) = row else {
            let what = match kind {
                RevokedKind::X509 => "X.509-SVID with serial",
                RevokedKind::Jwt => "JWT-SVID with jti",
            };
            return Err(DataStoreError::NotFound(format!(
                "{what} {id} (never issued by this server, or already expired)"
            )));
        };
        let authority_id: String = row.try_get("authority_id").map_err(backend)?;
        let expires_at: i64 = row.try_get("expires_at").map_err(backend)?;
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
        .await
        .map_err(backend)?;
        let row = sqlx::query(
            "SELECT kind, id, authority_id, reason, revoked_at, expires_at FROM revocations \
             WHERE kind = ? AND id = ?",
        )
        .bind(kind.as_str())
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let rev = revocation_from_row(&row)?;
        tx.commit().await.map_err(backend)?;
        Ok(rev)
    }

    async fn revocations(&self, now: i64) -> Result<Vec<Revocation>> {
        let rows = sqlx::query(
            "SELECT kind, id, authority_id, reason, revoked_at, expires_at FROM revocations \
             WHERE expires_at > ? ORDER BY revoked_at, id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(revocation_from_row).collect()
    }

    async fn prune_expired(&self, now: i64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        for sql in [
            "DELETE FROM issued_x509 WHERE expires_at <= ?",
            "DELETE FROM issued_jwt WHERE expires_at <= ?",
        ] {
            sqlx::query(sql)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        let done = sqlx::query("DELETE FROM revocations WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests;
