//! Issued credentials, revocations and the event log.

use super::{id, Opener};
use crate::datastore::{DataStoreError, IssuedX509, RevokedKind};
use crate::events::Change;

pub(crate) async fn concurrent_serial_records_all_commit_and_a_revocation_finds_each(
    o: &dyn Opener,
) {
    let ds = o.open().await;
    let batches: Vec<Vec<IssuedX509>> = (0..16)
        .map(|b| {
            (0..100)
                .map(|i| IssuedX509 {
                    serial: format!("{b:02x}{i:04x}"),
                    spiffe_id: id(&format!("spiffe://example.org/w{b}/{i}")),
                    authority_id: "ca".into(),
                    expires_at: 5000,
                    audit: None,
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
    // Every batch committed before its call returned.
    for serial in ["000000", "0f0063", "070031"] {
        let revoked = ds
            .revoke(RevokedKind::X509, serial, "test", 1000)
            .await
            .unwrap();
        assert_eq!(revoked.authority_id, "ca");
        assert_eq!(revoked.expires_at, 5000);
    }
    ds.record_jwt("jti-1", &id("spiffe://example.org/w"), "kid-1", 4000)
        .await
        .unwrap();
    let jwt = ds
        .revoke(RevokedKind::Jwt, "jti-1", "leaked", 1000)
        .await
        .unwrap();
    assert_eq!((jwt.authority_id.as_str(), jwt.expires_at), ("kid-1", 4000));
}

pub(crate) async fn revocations_are_listed_until_they_expire(o: &dyn Opener) {
    let ds = o.open().await;
    let w = id("spiffe://example.org/w");
    ds.record_x509("aa", &w, "ca", 3000).await.unwrap();
    ds.record_x509("bb", &w, "ca", 2000).await.unwrap();
    assert!(matches!(
        ds.revoke(RevokedKind::X509, "cc", "never issued", 1000)
            .await,
        Err(DataStoreError::NotFound(_))
    ));
    assert!(matches!(
        ds.revoke(RevokedKind::X509, "bb", "expired", 2000).await,
        Err(DataStoreError::NotFound(_))
    ));
    let first = ds
        .revoke(RevokedKind::X509, "aa", "key compromise", 1000)
        .await
        .unwrap();
    // Revoking again keeps the first record, and is an event again.
    let again = ds
        .revoke(RevokedKind::X509, "aa", "other reason", 1500)
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(ds.revocations(1000).await.unwrap(), vec![first.clone()]);
    let last = ds.current_revision().await.unwrap();
    assert_eq!(
        ds.events_after(last - 1, 5).await.unwrap()[0].change,
        Change::Revoked(first)
    );
    assert_eq!(ds.prune_expired(2999).await.unwrap(), 0);
    assert_eq!(ds.prune_expired(3000).await.unwrap(), 1);
    assert!(ds.revocations(1000).await.unwrap().is_empty());
}

pub(crate) async fn events_come_back_in_revision_order_and_are_pruned_from_the_oldest(
    o: &dyn Opener,
) {
    let ds = o.open().await;
    let mut commits = ds.commits();
    assert_eq!(ds.current_revision().await.unwrap(), 0);
    assert_eq!(ds.append_events(vec![]).await.unwrap(), 0);
    let last = ds
        .append_events(vec![Change::CrlsChanged, Change::TaintedChanged])
        .await
        .unwrap();
    assert_eq!(last, 2);
    let told = commits.recv().await.unwrap();
    assert_eq!(
        told.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [1, 2],
        "this process's commit, told right after it"
    );
    for _ in 0..3 {
        ds.append_events(vec![Change::CrlsChanged]).await.unwrap();
    }
    let all = ds.events_after(0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(all[1].change, Change::TaintedChanged);
    assert_eq!(ds.events_after(2, 2).await.unwrap().len(), 2);
    assert_eq!(ds.events_floor().await.unwrap(), 0);
    assert_eq!(ds.prune_events(2).await.unwrap(), 3);
    assert_eq!(ds.events_floor().await.unwrap(), 3);
    assert_eq!(ds.current_revision().await.unwrap(), 5);
}
