use std::sync::Arc;

use signet_core::{RegistrationEntry, Selector, SpiffeId};

use sqlx::Row;

use super::rows::ENTRIES_BY_PARENT;
use super::*;
use crate::ca::{AuthorityKind, AuthorityState};
use crate::datastore::{
    AgentRecord, AgentStore, AuthorityStore, CredentialStore, DataStoreError, EntryFilter,
    EntryRecord, EntryStore, EventLog, IssuedX509, NewEntry, RevokedKind,
};
use crate::datastore::{AuthorityRecord, SavedAuthorities};
use crate::events::Change;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn agent(token: &str) -> AgentRecord {
    AgentRecord {
        spiffe_id: id(&format!(
            "spiffe://example.org/signet/agent/join_token/{token}"
        )),
        attestation_type: "join_token".into(),
        serial: "01".into(),
        expires_at: 2000,
        banned: false,
        attested_at: 1000,
        selectors: vec![],
    }
}

fn entry(n: u32, parent: &str, selectors: &[&str]) -> RegistrationEntry {
    RegistrationEntry {
        id: format!("entry-{n}"),
        spiffe_id: id(&format!("spiffe://example.org/w{n}")),
        parent_id: id(parent),
        selectors: selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect(),
        x509_svid_ttl: Some(Duration::from_secs(60)),
        jwt_svid_ttl: None,
        dns_names: vec!["web.local".into()],
        hint: "h".into(),
        admin: false,
        downstream: true,
        revision: 0,
    }
}

async fn open(dir: &tempfile::TempDir) -> SqliteDataStore {
    SqliteDataStore::open(&dir.path().join("datastore.sqlite3"))
        .await
        .unwrap()
}

#[tokio::test]
async fn join_token_is_burned_exactly_once_under_concurrent_attests() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Arc::new(open(&dir).await);
    ds.create_join_token("tok", 5000).await.unwrap();
    let (a, b) = tokio::join!(
        {
            let ds = ds.clone();
            async move { ds.attest_with_join_token("tok", 1000, agent("tok")).await }
        },
        {
            let ds = ds.clone();
            async move { ds.attest_with_join_token("tok", 1000, agent("tok")).await }
        }
    );
    let results = [a, b];
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .any(|r| matches!(r, Err(DataStoreError::JoinTokenNotFound))));
    assert!(matches!(
        ds.attest_with_join_token("tok", 1000, agent("tok")).await,
        Err(DataStoreError::JoinTokenNotFound)
    ));
    assert_eq!(ds.list_agents().await.unwrap().len(), 1);
}

#[tokio::test]
async fn expired_join_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ds = open(&dir).await;
    ds.create_join_token("old", 1000).await.unwrap();
    assert!(matches!(
        ds.attest_with_join_token("old", 1000, agent("old")).await,
        Err(DataStoreError::JoinTokenExpired)
    ));
    assert!(ds
        .get_agent(&agent("old").spiffe_id)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn banned_agent_cannot_attest_again_and_evicted_one_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let ds = open(&dir).await;
    ds.create_join_token("t1", 5000).await.unwrap();
    let a = ds
        .attest_with_join_token("t1", 1000, agent("t1"))
        .await
        .unwrap();
    let banned = ds.ban_agent(&a.spiffe_id).await.unwrap();
    assert!(banned.banned);
    ds.create_join_token("t1", 5000).await.unwrap();
    assert!(matches!(
        ds.attest_with_join_token("t1", 1000, agent("t1")).await,
        Err(DataStoreError::AgentBanned)
    ));
    ds.update_agent_svid(&a.spiffe_id, "ff", 3000)
        .await
        .unwrap();
    let got = ds.get_agent(&a.spiffe_id).await.unwrap().unwrap();
    assert_eq!(
        (got.serial.as_str(), got.expires_at, got.banned),
        ("ff", 3000, true)
    );
    ds.evict_agent(&a.spiffe_id).await.unwrap();
    assert!(ds.get_agent(&a.spiffe_id).await.unwrap().is_none());
    assert!(matches!(
        ds.evict_agent(&a.spiffe_id).await,
        Err(DataStoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn entries_are_filtered_counted_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let ds = open(&dir).await;
    let p1 = "spiffe://example.org/agent/1";
    let p2 = "spiffe://example.org/agent/2";
    let e1 = ds
        .create_entry(entry(1, p1, &["unix:uid:1", "unix:gid:2"]), 10)
        .await
        .unwrap();
    ds.create_entry(entry(2, p1, &["unix:uid:1"]), 11)
        .await
        .unwrap();
    ds.create_entry(entry(3, p2, &["unix:uid:3"]), 12)
        .await
        .unwrap();
    assert!(e1.entry.revision > 0);
    assert!(matches!(
        ds.create_entry(
            RegistrationEntry {
                id: "other".into(),
                ..entry(1, p1, &["unix:uid:1", "unix:gid:2"])
            },
            13
        )
        .await,
        Err(DataStoreError::AlreadyExists(_))
    ));
    assert_eq!(ds.count_entries().await.unwrap(), 3);
    assert_eq!(ds.entries_by_parent(&id(p1)).await.unwrap().len(), 2);
    let by_sel = ds
        .list_entries(&EntryFilter {
            selectors: vec![Selector::parse("unix:gid:2").unwrap()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_sel, vec![e1.clone()]);
    let by_id = ds
        .list_entries(&EntryFilter {
            spiffe_id: Some(id("spiffe://example.org/w3")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(ds.delete_entry("entry-1").await.unwrap(), e1);
    assert!(ds.get_entry("entry-1").await.unwrap().is_none());
    assert!(matches!(
        ds.delete_entry("entry-1").await,
        Err(DataStoreError::NotFound(_))
    ));
    assert_eq!(ds.count_entries().await.unwrap(), 2);
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let ds = open(&dir).await;
        before = ds
            .create_entry(
                entry(7, "spiffe://example.org/agent/1", &["unix:uid:7"]),
                10,
            )
            .await
            .unwrap();
        ds.create_join_token("keep", 9000).await.unwrap();
        ds.close().await;
    }
    let ds = open(&dir).await;
    assert_eq!(ds.get_entry("entry-7").await.unwrap(), Some(before.clone()));
    assert_eq!(ds.current_revision().await.unwrap(), before.entry.revision);
    ds.attest_with_join_token("keep", 1000, agent("keep"))
        .await
        .unwrap();
    assert_eq!(ds.prune_join_tokens(10_000).await.unwrap(), 0);
}

fn authority(id: &str, state: AuthorityState) -> AuthorityRecord {
    AuthorityRecord {
        kind: AuthorityKind::X509,
        id: id.into(),
        state,
        tainted: false,
        not_before: 1,
        not_after: 2,
        certificate: Some(vec![0x30, 0x00]),
    }
}

#[tokio::test]
async fn authorities_are_saved_whole_with_the_sequence_and_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds.sqlite3");
    let ds = SqliteDataStore::open(&path).await.unwrap();
    assert!(ds.load_authorities().await.unwrap().authorities.is_empty());
    let a = vec![
        authority("aa", AuthorityState::Active),
        authority("bb", AuthorityState::Prepared),
    ];
    let first = ds
        .save_authorities(a.clone(), "fp-a", vec![])
        .await
        .unwrap();
    assert_eq!(first.sequence, 1);
    let events = ds.events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].change, Change::BundleChanged);
    assert_eq!(first.revision, events[0].revision);
    // Same fingerprint (a state change): no new sequence, no BundleChanged;
    // the changes asked for are written.
    let mut b = a.clone();
    b[1].tainted = true;
    let second = ds
        .save_authorities(b.clone(), "fp-a", vec![Change::TaintedChanged])
        .await
        .unwrap();
    assert_eq!(second.sequence, 1);
    let events = ds.events_after(first.revision, 10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.change.clone()).collect::<Vec<_>>(),
        [Change::TaintedChanged]
    );
    assert_eq!(
        ds.save_authorities(b.clone(), "fp-a", vec![])
            .await
            .unwrap(),
        SavedAuthorities {
            sequence: 1,
            revision: second.revision
        }
    );
    ds.close().await;

    let ds = SqliteDataStore::open(&path).await.unwrap();
    let stored = ds.load_authorities().await.unwrap();
    assert_eq!(stored.authorities, b, "in order, as saved");
    assert_eq!(stored.sequence, 1);
    assert_eq!(
        ds.save_authorities(vec![], "fp-b", vec![])
            .await
            .unwrap()
            .sequence,
        2
    );
    assert!(ds.load_authorities().await.unwrap().authorities.is_empty());
    ds.close().await;
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
async fn concurrent_entry_creates_all_succeed_and_are_all_stored() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Arc::new(open(&dir).await);
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let ds = ds.clone();
            tokio::spawn(async move {
                ds.create_entry(entry(n, "spiffe://example.org/a", &["unix:uid:1"]), 1)
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(ds.count_entries().await.unwrap(), 16);
}

#[tokio::test]
async fn concurrent_agent_attestations_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Arc::new(open(&dir).await);
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let ds = ds.clone();
            tokio::spawn(async move { ds.attest_agent(agent(&format!("t{n}"))).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(ds.list_agents().await.unwrap().len(), 16);
}

#[tokio::test]
async fn a_batch_stores_every_entry_but_the_duplicate_each_with_its_own_revision() {
    let dir = tempfile::tempdir().unwrap();
    let ds = open(&dir).await;
    let parent = "spiffe://example.org/agent/1";
    ds.create_entry(entry(1, parent, &["unix:uid:1"]), 1)
        .await
        .unwrap();
    let new = |e: RegistrationEntry| NewEntry {
        entry: e,
        node: false,
    };
    let duplicate = RegistrationEntry {
        id: "dup".into(),
        ..entry(1, parent, &["unix:uid:1"])
    };
    let results = ds
        .create_entries(
            vec![
                new(entry(2, parent, &["unix:uid:2"])),
                new(duplicate),
                new(entry(3, parent, &["unix:uid:3"])),
                // Duplicates an earlier entry of the same batch.
                new(RegistrationEntry {
                    id: "dup-in-batch".into(),
                    ..entry(3, parent, &["unix:uid:3"])
                }),
            ],
            5,
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 4);
    assert!(matches!(&results[1], Err(DataStoreError::AlreadyExists(m)) if m.contains("entry-1")));
    assert!(matches!(&results[3], Err(DataStoreError::AlreadyExists(m)) if m.contains("entry-3")));
    let (two, three) = (results[0].clone().unwrap(), results[2].clone().unwrap());
    assert!(two.entry.revision < three.entry.revision);
    assert_eq!(ds.get_entry("entry-2").await.unwrap(), Some(two));
    assert_eq!(ds.get_entry("entry-3").await.unwrap(), Some(three.clone()));
    assert_eq!(ds.count_entries().await.unwrap(), 3);
    assert_eq!(ds.current_revision().await.unwrap(), three.entry.revision);
}

#[tokio::test]
async fn a_parents_entries_stream_in_creation_order_like_the_list() {
    use futures::TryStreamExt;
    let dir = tempfile::tempdir().unwrap();
    let ds = open(&dir).await;
    let p1 = "spiffe://example.org/signet/agent/join_token/one";
    let p2 = "spiffe://example.org/signet/agent/join_token/two";
    // Created out of id order, and another parent's entry in between.
    for (n, parent, at) in [(5, p1, 30), (3, p1, 10), (9, p2, 20), (1, p1, 20)] {
        ds.create_entry(entry(n, parent, &["unix:uid:1"]), at)
            .await
            .unwrap();
    }
    let streamed: Vec<EntryRecord> = ds
        .entries_by_parent_streamed(&id(p1))
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<&str> = streamed.iter().map(|e| e.entry.id.as_str()).collect();
    assert_eq!(ids, ["entry-3", "entry-1", "entry-5"]);
    assert_eq!(streamed, ds.entries_by_parent(&id(p1)).await.unwrap());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_serial_records_all_commit_and_a_revocation_finds_each() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Arc::new(open(&dir).await);
    let batches: Vec<Vec<IssuedX509>> = (0..16)
        .map(|b| {
            (0..100)
                .map(|i| IssuedX509 {
                    serial: format!("{b:02x}{i:04x}"),
                    spiffe_id: id(&format!("spiffe://example.org/w{b}/{i}")),
                    authority_id: "ca".into(),
                    expires_at: 5000,
                })
                .collect()
        })
        .collect();
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let ds = ds.clone();
            tokio::spawn(async move { ds.record_x509_many(batch).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM issued_x509")
        .fetch_one(&ds.pool)
        .await
        .unwrap();
    assert_eq!(
        stored, 1600,
        "every batch committed before its call returned"
    );
    for serial in ["000000", "0f0063", "070031"] {
        let revoked = ds
            .revoke(RevokedKind::X509, serial, "test", 1000)
            .await
            .unwrap();
        assert_eq!(revoked.authority_id, "ca");
        assert_eq!(revoked.expires_at, 5000);
    }
}

#[tokio::test]
async fn a_large_batch_gets_consecutive_revisions_in_order_and_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ds = open(&dir).await;
    let parent = "spiffe://example.org/agent/1";
    let before = ds.current_revision().await.unwrap();
    // More rows than one INSERT statement takes.
    let batch: Vec<NewEntry> = (0..300)
        .map(|n| NewEntry {
            entry: entry(n, parent, &["unix:uid:1"]),
            node: n % 100 == 7,
        })
        .collect();
    let results = ds.create_entries(batch, 9).await.unwrap();
    let revisions: Vec<u64> = results
        .iter()
        .map(|r| r.as_ref().unwrap().entry.revision)
        .collect();
    assert_eq!(revisions, (before + 1..=before + 300).collect::<Vec<_>>());
    assert_eq!(ds.current_revision().await.unwrap(), before + 300);
    for result in [&results[0], &results[107], &results[299]] {
        let created = result.as_ref().unwrap();
        assert_eq!(
            ds.get_entry(&created.entry.id).await.unwrap().as_ref(),
            Some(created),
            "stored as returned"
        );
    }
    assert!(results[107].as_ref().unwrap().node);
    // The same batch again: every entry refused, nothing stored, no revision.
    let again: Vec<NewEntry> = (0..300)
        .map(|n| NewEntry {
            entry: entry(n, parent, &["unix:uid:1"]),
            node: false,
        })
        .collect();
    let refused = ds.create_entries(again, 10).await.unwrap();
    assert!(refused
        .iter()
        .all(|r| matches!(r, Err(DataStoreError::AlreadyExists(_)))));
    assert_eq!(ds.count_entries().await.unwrap(), 300);
    assert_eq!(ds.current_revision().await.unwrap(), before + 300);
}

#[tokio::test]
async fn an_id_taken_by_a_stored_or_an_earlier_batch_entry_is_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let ds = open(&dir).await;
    let parent = "spiffe://example.org/agent/1";
    ds.create_entry(entry(1, parent, &["unix:uid:1"]), 1)
        .await
        .unwrap();
    let same_id = |n: u32, id: &str| NewEntry {
        entry: RegistrationEntry {
            id: id.into(),
            ..entry(n, parent, &["unix:uid:1"])
        },
        node: false,
    };
    let results = ds
        .create_entries(
            vec![same_id(2, "entry-1"), same_id(3, "x"), same_id(4, "x")],
            5,
        )
        .await
        .unwrap();
    assert!(
        matches!(&results[0], Err(DataStoreError::AlreadyExists(m)) if m == "entry id entry-1 already exists")
    );
    assert!(results[1].is_ok());
    assert!(
        matches!(&results[2], Err(DataStoreError::AlreadyExists(m)) if m == "entry id x already exists")
    );
    assert_eq!(ds.count_entries().await.unwrap(), 2);
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
