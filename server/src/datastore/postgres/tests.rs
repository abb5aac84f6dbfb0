//! PostgreSQL's own: the conformance suite every backend passes, on a fresh
//! database of a real cluster each, and what only several servers on one
//! database have: revisions from concurrent writers of two servers, each
//! server hearing the other's commits, and a database that goes away.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use signet_tests::postgres::{fresh_database, Cluster};

use crate::datastore::tests::{backend_tests, Opener};
use crate::datastore::{DataStore, DatastoreUrl, PostgresSettings};
use crate::events::{Change, ChangeBus};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Each `open` is another server on one database.
struct Database(String);

impl Opener for Database {
    fn open(&self) -> BoxFuture<'_, Arc<dyn DataStore>> {
        Box::pin(async move { open(&self.0).await })
    }
}

async fn open(url: &str) -> Arc<dyn DataStore> {
    let url: DatastoreUrl = url.parse().unwrap();
    let settings = PostgresSettings {
        connect_timeout: Duration::from_secs(2),
        ..PostgresSettings::default()
    };
    crate::datastore::open(&url, &settings).await.unwrap()
}

async fn postgres_database() -> Database {
    Database(tokio::task::spawn_blocking(fresh_database).await.unwrap())
}

backend_tests!(postgres_database);

/// Starts taking every revision `bus` sends, from its start, until the
/// last one `until` will name.
fn tail(bus: &ChangeBus, until: watch::Receiver<u64>) -> JoinHandle<Vec<u64>> {
    let (mut rx, start) = bus.subscribe();
    assert_eq!(start, 0);
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut until = until;
        loop {
            let last = seen.last().copied().unwrap_or(0);
            if last > 0 && last >= *until.borrow_and_update() {
                return seen;
            }
            tokio::select! {
                event = tokio::time::timeout(Duration::from_secs(10), rx.recv()) => match event {
                    Ok(Ok(event)) => seen.push(event.revision),
                    other => panic!("tailer stopped after {last}: {other:?}"),
                },
                _ = until.changed() => {}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_writers_on_two_servers_for_ten_seconds_reach_every_tailer_in_order() {
    let db = postgres_database().await;
    let servers = [db.open().await, db.open().await];
    let buses = [
        ChangeBus::start(servers[0].clone()).await.unwrap(),
        ChangeBus::start(servers[1].clone()).await.unwrap(),
    ];
    let (last_written, until) = watch::channel(u64::MAX);
    let tailers = [tail(&buses[0], until.clone()), tail(&buses[1], until)];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let ds = servers[w % 2].clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while tokio::time::Instant::now() < deadline {
                    // A mix of one-event and several-event commits.
                    let n = 1 + mine.len() % 3;
                    let last = ds
                        .append_events(vec![Change::CrlsChanged; n])
                        .await
                        .unwrap();
                    mine.extend((last + 1 - n as u64)..=last);
                }
                mine
            })
        })
        .collect();
    let mut written = BTreeSet::new();
    for w in writers {
        for revision in w.await.unwrap() {
            assert!(written.insert(revision), "revision {revision} given twice");
        }
    }
    let last = *written.last().unwrap();
    assert_eq!(
        written,
        (1..=last).collect::<BTreeSet<_>>(),
        "no revision skipped"
    );
    assert!(last > 100, "only {last} events in 10 s");
    last_written.send_replace(last);
    for tailer in tailers {
        let seen = tailer.await.unwrap();
        assert_eq!(
            seen,
            (1..=last).collect::<Vec<_>>(),
            "each event once, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_one_server_wakes_the_others_tailer_at_once() {
    let db = postgres_database().await;
    let (a, b) = (db.open().await, db.open().await);
    let bus_b = ChangeBus::start(b.clone()).await.unwrap();
    let (mut rx, _) = bus_b.subscribe();
    for n in 1..=20u64 {
        a.append_events(vec![Change::TaintedChanged]).await.unwrap();
        // Well within the 5 s poll, even on a loaded box: the NOTIFY woke it.
        let event = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("heard within 2 s (LISTEN, not the 5 s poll)")
            .unwrap();
        assert_eq!(event.revision, n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_calls_fail_unavailable_and_all_resumes_after() {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let url = cluster.fresh_database();
    let (a, b) = (open(&url).await, open(&url).await);
    let bus_b = ChangeBus::start(b.clone()).await.unwrap();
    let (_, until) = watch::channel(2);
    let tailer = tail(&bus_b, until);
    a.append_events(vec![Change::CrlsChanged]).await.unwrap();
    let cluster = Arc::new(cluster);
    let down = cluster.clone();
    tokio::task::spawn_blocking(move || down.stop())
        .await
        .unwrap();
    let e = a
        .append_events(vec![Change::CrlsChanged])
        .await
        .unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    assert!(b.ping().await.unwrap_err().is_unavailable());
    let up = cluster.clone();
    tokio::task::spawn_blocking(move || up.start_again())
        .await
        .unwrap();
    // Nothing of the failed call was applied; the next one works.
    let revision = a.append_events(vec![Change::TaintedChanged]).await.unwrap();
    assert_eq!(revision, 2);
    b.ping().await.unwrap();
    // The other server's tailer heard of it (its listener reconnected).
    assert_eq!(tailer.await.unwrap(), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_a_revision_seen_on_another_server_gets_events_not_a_snapshot() {
    let db = postgres_database().await;
    let (a, b) = (db.open().await, db.open().await);
    let bus_b = ChangeBus::start(b.clone()).await.unwrap();
    for n in 1..=10u64 {
        // An agent saw `n` on A and moves to B at once, maybe before B's
        // bus has heard of it.
        let seen = a.append_events(vec![Change::CrlsChanged]).await.unwrap();
        assert_eq!(seen, n);
        let (_, current, resume) = bus_b.resume(seen).await;
        assert!(current >= seen);
        assert!(
            matches!(resume, crate::events::Resume::Events(ref e) if e.is_empty()),
            "resumed at {seen}, not a snapshot"
        );
    }
    // A revision no server has written is a snapshot (a restored database).
    let (_, _, resume) = bus_b.resume(1000).await;
    assert!(matches!(resume, crate::events::Resume::Snapshot));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_verify_full_talks_tls_to_a_server_the_ca_vouches_for_and_no_other() {
    let (cluster, ca) = tokio::task::spawn_blocking(Cluster::start_with_tls)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("db-ca.pem");
    std::fs::write(&ca_path, ca).unwrap();
    let url: DatastoreUrl = cluster.fresh_database().parse().unwrap();
    let verify = |root: std::path::PathBuf| PostgresSettings {
        ssl_mode: Some(sqlx::postgres::PgSslMode::VerifyFull),
        ssl_root_cert: Some(root),
        connect_timeout: Duration::from_secs(2),
        ..PostgresSettings::default()
    };
    let ds = crate::datastore::open(&url, &verify(ca_path))
        .await
        .unwrap();
    ds.append_events(vec![Change::CrlsChanged]).await.unwrap();
    assert_eq!(ds.current_revision().await.unwrap(), 1);
    ds.close().await;
    // A CA that did not issue the server's certificate: refused, no panic.
    let (_other, other_ca) = tokio::task::spawn_blocking(Cluster::start_with_tls)
        .await
        .unwrap();
    let wrong = dir.path().join("other-ca.pem");
    std::fs::write(&wrong, other_ca).unwrap();
    assert!(crate::datastore::open(&url, &verify(wrong)).await.is_err());
}
