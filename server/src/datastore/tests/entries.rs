//! Registration entries, their revisions and events.

use futures::TryStreamExt;
use signet_core::{RegistrationEntry, Selector, TrustDomain};

use super::{entry, id, Opener};
use crate::datastore::{DataStoreError, EntryFilter, EntryRecord, NewEntry};
use crate::events::Change;

pub(crate) async fn entries_are_filtered_counted_and_deleted(o: &dyn Opener) {
    let ds = o.open().await;
    let p1 = "spiffe://example.org/agent/1";
    let p2 = "spiffe://example.org/agent/2";
    let e1 = ds
        .create_entry(entry(1, p1, &["unix:uid:1", "unix:gid:2"]), 10)
        .await
        .unwrap();
    ds.create_entry(entry(2, p1, &["unix:uid:1"]), 11)
        .await
        .unwrap();
    let alias = ds
        .create_node_alias(entry(3, p2, &["unix:uid:3"]), 12)
        .await
        .unwrap();
    assert!(alias.node);
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
    assert_eq!(by_id, vec![alias.clone()]);
    let aliases = ds
        .list_entries(&EntryFilter {
            node: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(aliases, vec![alias]);
    let ids: Vec<String> = ds
        .get_entries(&["entry-2", "nope", "entry-1"])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.entry.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"entry-1".to_owned()) && ids.contains(&"entry-2".to_owned()));
    assert_eq!(ds.delete_entry("entry-1").await.unwrap(), e1);
    assert!(ds.get_entry("entry-1").await.unwrap().is_none());
    assert!(matches!(
        ds.delete_entry("entry-1").await,
        Err(DataStoreError::NotFound(_))
    ));
    assert_eq!(ds.count_entries().await.unwrap(), 2);
    // The deletion's event carries the whole record (it is gone from the table).
    let last = ds.current_revision().await.unwrap();
    let events = ds.events_after(last - 1, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].change, Change::EntryDeleted(e1));
}

pub(crate) async fn concurrent_entry_creates_all_succeed_and_are_all_stored(o: &dyn Opener) {
    // Two handles: on PostgreSQL, two servers writing at once.
    let (a, b) = (o.open().await, o.open().await);
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let ds = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                ds.create_entry(entry(n, "spiffe://example.org/a", &["unix:uid:1"]), 1)
                    .await
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for t in tasks {
        revisions.push(t.await.unwrap().unwrap().entry.revision);
    }
    assert_eq!(a.count_entries().await.unwrap(), 16);
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 16, "each its own revision");
    // One entry stored through both at once is stored once.
    let twin = |n| RegistrationEntry {
        id: format!("twin-{n}"),
        ..entry(99, "spiffe://example.org/a", &["unix:uid:9"])
    };
    let (ra, rb) = tokio::join!(a.create_entry(twin(1), 2), b.create_entry(twin(2), 2));
    assert_eq!(
        [&ra, &rb].iter().filter(|r| r.is_ok()).count(),
        1,
        "{ra:?} {rb:?}"
    );
    assert_eq!(a.count_entries().await.unwrap(), 17);
}

pub(crate) async fn a_batch_stores_every_entry_but_the_duplicate_each_with_its_own_revision(
    o: &dyn Opener,
) {
    let ds = o.open().await;
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

pub(crate) async fn a_parents_entries_stream_in_creation_order_like_the_list(o: &dyn Opener) {
    let ds = o.open().await;
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
}

pub(crate) async fn a_large_batch_gets_consecutive_revisions_in_order_and_reads_back_whole(
    o: &dyn Opener,
) {
    let ds = o.open().await;
    let parent = "spiffe://example.org/agent/1";
    let before = ds.current_revision().await.unwrap();
    // More rows than one SQLite INSERT statement takes.
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
    let events = ds.events_after(before, 1000).await.unwrap();
    assert_eq!(events.len(), 300);
    assert_eq!(
        events[107].change,
        Change::EntryCreated(results[107].clone().unwrap())
    );
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

pub(crate) async fn an_id_taken_by_a_stored_or_an_earlier_batch_entry_is_refused_alone(
    o: &dyn Opener,
) {
    let ds = o.open().await;
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
    // A single create with a taken id says so too.
    assert!(matches!(
        ds.create_entry(same_id(5, "x").entry, 6).await,
        Err(DataStoreError::AlreadyExists(m)) if m == "entry id x already exists"
    ));
}

pub(crate) async fn entries_with_reserved_ids_are_found_by_exact_prefix(o: &dyn Opener) {
    let ds = o.open().await;
    let td = TrustDomain::new("ex_ample.org").unwrap();
    let with_id = |n: u32, spiffe_id: &str| RegistrationEntry {
        spiffe_id: id(spiffe_id),
        ..entry(n, "spiffe://ex_ample.org/agent", &["unix:uid:1"])
    };
    for (n, spiffe_id) in [
        (1, "spiffe://ex_ample.org/signet"),
        (2, "spiffe://ex_ample.org/signet/server"),
        (3, "spiffe://ex_ample.org/signetx"),
        // `_` is not a wildcard: this is another trust domain.
        (4, "spiffe://exxample.org/signet/server"),
    ] {
        ds.create_entry(with_id(n, spiffe_id), i64::from(n))
            .await
            .unwrap();
    }
    let found: Vec<String> = ds
        .entries_with_reserved_ids(&td)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.entry.id)
        .collect();
    assert_eq!(found, ["entry-1", "entry-2"]);
}
