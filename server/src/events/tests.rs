use super::*;
use crate::datastore::{DataStore, SqliteDataStore};

async fn store(dir: &tempfile::TempDir) -> Arc<dyn DataStore> {
    Arc::new(
        SqliteDataStore::open(&dir.path().join("ds.sqlite3"))
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn subscribers_see_every_committed_event_in_revision_order() {
    let dir = tempfile::tempdir().unwrap();
    let ds = store(&dir).await;
    let bus = ChangeBus::start(ds.clone()).await.unwrap();
    let (mut rx, start) = bus.subscribe();
    assert_eq!(start, 0);
    ds.append_events(vec![Change::BundleChanged]).await.unwrap();
    ds.append_events(vec![Change::TaintedChanged])
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap().revision, 1);
    assert_eq!(rx.recv().await.unwrap().revision, 2);
    assert_eq!(bus.current_revision(), 2);
    assert_eq!(ds.current_revision().await.unwrap(), 2);
}

#[tokio::test]
async fn a_batch_is_one_event_per_change_in_order_from_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let ds = store(&dir).await;
    let bus = ChangeBus::start(ds.clone()).await.unwrap();
    let (mut rx, start) = bus.subscribe();
    let last = ds
        .append_events(vec![
            Change::BundleChanged,
            Change::TaintedChanged,
            Change::CrlsChanged,
        ])
        .await
        .unwrap();
    assert_eq!(last, start + 3);
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = rx.recv().await.unwrap();
        got.push((e.revision, e.change.clone()));
    }
    assert_eq!(
        got,
        [
            (start + 1, Change::BundleChanged),
            (start + 2, Change::TaintedChanged),
            (start + 3, Change::CrlsChanged),
        ]
    );
    assert!(matches!(bus.resume(start + 1).await.2, Resume::Events(ev) if ev.len() == 2));
    assert_eq!(ds.append_events(vec![]).await.unwrap(), last);
}

#[tokio::test]
async fn an_event_whose_notice_never_came_is_read_from_the_log_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ds = store(&dir).await;
    let bus = ChangeBus::start(ds.clone()).await.unwrap();
    let (mut rx, start) = bus.subscribe();
    // A second store on the same file shares the log but not the notices:
    // its event is one whose writer was cancelled between commit and notice.
    let other = SqliteDataStore::open(&dir.path().join("ds.sqlite3"))
        .await
        .unwrap();
    other
        .append_events(vec![Change::TaintedChanged])
        .await
        .unwrap();
    ds.append_events(vec![Change::BundleChanged]).await.unwrap();
    let a = rx.recv().await.unwrap();
    let b = rx.recv().await.unwrap();
    assert_eq!(
        [
            (a.revision, a.change.clone()),
            (b.revision, b.change.clone())
        ],
        [
            (start + 1, Change::TaintedChanged),
            (start + 2, Change::BundleChanged)
        ]
    );
}

#[tokio::test]
async fn resume_returns_only_later_events_or_asks_for_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let ds = store(&dir).await;
    ds.append_events(vec![Change::CrlsChanged; 10])
        .await
        .unwrap();
    let bus = ChangeBus::start(ds.clone()).await.unwrap();
    let (mut rx, _) = bus.subscribe();
    for _ in 0..3 {
        ds.append_events(vec![Change::BundleChanged]).await.unwrap();
        rx.recv().await.unwrap();
    }
    let (_, cur, r) = bus.resume(11).await;
    assert_eq!(cur, 13);
    let Resume::Events(ev) = r else { panic!() };
    assert_eq!(ev.iter().map(|e| e.revision).collect::<Vec<_>>(), [12, 13]);
    let (_, _, r) = bus.resume(13).await;
    assert!(matches!(r, Resume::Events(ev) if ev.is_empty()));
    // Never seen anything, or from the future.
    assert!(matches!(bus.resume(0).await.2, Resume::Snapshot));
    assert!(matches!(bus.resume(14).await.2, Resume::Snapshot));
    // Before this process started: served from the log, not a snapshot.
    let Resume::Events(ev) = bus.resume(7).await.2 else {
        panic!("a resume older than the window needs no snapshot")
    };
    assert_eq!(
        ev.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [8, 9, 10, 11, 12, 13]
    );
    assert_eq!(ev[0].change, Change::CrlsChanged);
    // Pruned from the log: a snapshot.
    ds.prune_events(4).await.unwrap();
    assert!(matches!(bus.resume(7).await.2, Resume::Snapshot));
    assert!(matches!(bus.resume(9).await.2, Resume::Events(ev) if ev.len() == 4));
}

#[tokio::test]
async fn the_window_floor_moves_once_it_is_full_and_the_log_serves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let ds = store(&dir).await;
    let bus = ChangeBus::start(ds.clone()).await.unwrap();
    let (mut rx, _) = bus.subscribe();
    let last = ds
        .append_events(vec![Change::TaintedChanged; CAPACITY + 5])
        .await
        .unwrap();
    // The subscriber lags (the burst is larger than its channel, and than
    // the window): it is
    // told so, and the bus itself still sent everything in order.
    assert!(matches!(
        rx.recv().await,
        Err(broadcast::error::RecvError::Lagged(_))
    ));
    while rx.recv().await.unwrap().revision < last {}
    assert_eq!(bus.current_revision(), last);
    assert!(bus.shared.lock().floor > 1);
    let Resume::Events(ev) = bus.resume(1).await.2 else {
        panic!()
    };
    assert_eq!(ev.len(), CAPACITY + 4);
    assert!(ev.windows(2).all(|w| w[1].revision == w[0].revision + 1));
}

#[tokio::test]
async fn revisions_and_resumes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ds = store(&dir).await;
    let bus = ChangeBus::start(ds.clone()).await.unwrap();
    ds.append_events(vec![Change::BundleChanged]).await.unwrap();
    let last = ds.append_events(vec![Change::BundleChanged]).await.unwrap();
    drop(bus);
    drop(ds);
    let ds = store(&dir).await;
    let bus = ChangeBus::start(ds.clone()).await.unwrap();
    assert_eq!(bus.current_revision(), last);
    // A stream that saw everything resumes with nothing to catch up on;
    // one that saw the first event gets the second from the log.
    assert!(matches!(bus.resume(last).await.2, Resume::Events(ev) if ev.is_empty()));
    assert!(matches!(bus.resume(last - 1).await.2, Resume::Events(ev) if ev.len() == 1));
    assert!(ds.append_events(vec![Change::BundleChanged]).await.unwrap() > last);
}
