//! SQLite's own: the conformance suite every backend passes, and what only
//! a file on disk has (its mode, crash safety, the WAL, query plans).

use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::Row;

use super::rows::ENTRIES_BY_PARENT;
use super::*;
use crate::datastore::prelude::*;
use crate::datastore::tests::{agent, backend_tests, entry, id, Opener};
use crate::datastore::{DataStore, DataStoreError, IssuedX509};

/// Each `open` is another handle on one file.
struct SqliteFile(tempfile::TempDir);

impl Opener for SqliteFile {
    fn open(&self) -> BoxFuture<'_, Arc<dyn DataStore>> {
        Box::pin(async move {
            let ds = SqliteDataStore::open(&self.0.path().join("datastore.sqlite3"))
                .await
                .unwrap();
            Arc::new(ds) as Arc<dyn DataStore>
        })
    }
}

async fn sqlite_file() -> SqliteFile {
    SqliteFile(tempfile::tempdir().unwrap())
}

backend_tests!(sqlite_file);

async fn open(dir: &tempfile::TempDir) -> SqliteDataStore {
    SqliteDataStore::open(&dir.path().join("datastore.sqlite3"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_parents_entries_are_read_straight_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let ds = open(&dir).await;
    let p1 = "spiffe://example.org/signet/agent/join_token/one";
    // Streamed straight from the index: SQLite sorts nothing first.
    let plan: Vec<String> = sqlx::query(&format!(
        "EXPLAIN QUERY PLAN {}",
        ENTRIES_BY_PARENT.as_str()
    ))
    .bind(p1)
    .fetch_all(&ds.pool)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get::<String, _>("detail"))
    .collect();
    assert!(
        plan.iter().any(|d| d.contains("entries_parent_created")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|d| d.contains("TEMP B-TREE")), "{plan:?}");
}

#[tokio::test]
async fn a_crash_without_close_loses_nothing_committed_and_the_file_stays_sound() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ds = open(&dir).await;
        ds.create_join_token("t1", 5000).await.unwrap();
        ds.attest_with_join_token("t1", 1000, agent("t1"))
            .await
            .unwrap();
        for n in 0..20 {
            ds.create_entry(entry(n, "spiffe://example.org/a", &["unix:uid:1"]), 1)
                .await
                .unwrap();
        }
        // Simulated crash: the pool is dropped, never closed (no checkpoint).
        drop(ds);
    }
    let ds = open(&dir).await;
    assert_eq!(ds.integrity_check().await.unwrap(), "ok");
    assert_eq!(ds.count_entries().await.unwrap(), 20);
    assert!(ds
        .get_agent(&agent("t1").spiffe_id)
        .await
        .unwrap()
        .is_some());
    // The token was burned in the same transaction that recorded the agent.
    assert!(matches!(
        ds.attest_with_join_token("t1", 1000, agent("t1")).await,
        Err(DataStoreError::JoinTokenNotFound)
    ));
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&ds.pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&ds.pool)
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous = FULL");
}

#[tokio::test]
async fn the_database_files_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datastore.sqlite3");
    let ds = SqliteDataStore::open(&path).await.unwrap();
    ds.create_join_token("h", 5000).await.unwrap();
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("datastore.sqlite3-wal");
    assert_eq!(mode(&wal), 0o600, "SQLite gives the WAL the file's mode");
    ds.close().await;
    // A file left 0644 by an older version is brought to 0600.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ds = SqliteDataStore::open(&path).await.unwrap();
    assert_eq!(mode(&path), 0o600);
    ds.close().await;
}

#[tokio::test]
async fn commits_leave_the_wal_to_the_checkpointer() {
    let dir = tempfile::tempdir().unwrap();
    let ds = open(&dir).await;
    for connections in [&ds.writer, &ds.pool] {
        let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(connections)
            .await
            .unwrap();
        assert_eq!(pages, 0, "a commit would checkpoint on the writer");
    }
    // Well past the 1000 pages at which a commit used to checkpoint.
    for b in 0..6u32 {
        let rows = (0..10_000u32)
            .map(|i| IssuedX509 {
                serial: format!("{b:02x}{i:04x}"),
                spiffe_id: id(&format!("spiffe://example.org/w{b}/{i}")),
                authority_id: "ca".into(),
                expires_at: 5000,
                audit: None,
            })
            .collect();
        ds.record_x509_many(rows).await.unwrap();
    }
    let done = checkpoint::once(&ds.pool).await.unwrap();
    assert!(done.log_frames > 1000, "{done:?}");
    assert_eq!(done.copied_frames, done.log_frames, "{done:?}");
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM issued_x509")
        .fetch_one(&ds.pool)
        .await
        .unwrap();
    assert_eq!(kept, 60_000);
}

#[tokio::test]
async fn authorities_stored_before_servers_had_ids_are_taken_over_by_the_server() {
    use crate::ca::{AuthorityKind, AuthorityState};
    let dir = tempfile::tempdir().unwrap();
    let ds = open(&dir).await;
    // What migration 0009 leaves of a single-server store: no owner.
    let legacy = crate::datastore::AuthorityRecord {
        kind: AuthorityKind::X509,
        id: "ca".into(),
        server_id: String::new(),
        state: AuthorityState::Active,
        tainted: false,
        not_before: 1,
        not_after: 2,
        certificate: Some(vec![0x30, 0x00]),
        public_key: None,
        upstream_root: None,
        upstream_chain: None,
    };
    ds.save_authorities("", vec![legacy], vec![]).await.unwrap();
    ds.register_server(crate::datastore::ServerRecord {
        id: "s1".into(),
        hostname: "h".into(),
        address: "127.0.0.1:8081".into(),
        started_at: 1,
        last_seen: 1,
    })
    .await
    .unwrap();
    let stored = ds.load_authorities().await.unwrap();
    assert_eq!(stored.authorities.len(), 1);
    assert_eq!(stored.authorities[0].server_id, "s1");
}
