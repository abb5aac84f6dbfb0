//! The servers sharing a datastore, and their CRLs.

use super::Opener;
use crate::datastore::{DataStoreError, ServerRecord, StoredCrl};
use crate::events::Change;

pub(crate) fn server(id: &str, at: i64) -> ServerRecord {
    ServerRecord {
        id: id.into(),
        hostname: format!("host-{id}"),
        address: "127.0.0.1:8081".into(),
        started_at: at,
        last_seen: at,
    }
}

pub(crate) async fn servers_are_registered_listed_and_removed(o: &dyn Opener) {
    let ds = o.open().await;
    ds.register_server(server("a", 100)).await.unwrap();
    ds.register_server(server("b", 200)).await.unwrap();
    // A restart registers again: same row, new start.
    ds.register_server(ServerRecord {
        address: "127.0.0.1:9000".into(),
        ..server("a", 300)
    })
    .await
    .unwrap();
    ds.touch_server("b", 400).await.unwrap();
    let listed = ds.list_servers().await.unwrap();
    assert_eq!(listed.len(), 2);
    let a = listed.iter().find(|s| s.id == "a").unwrap();
    assert_eq!((a.address.as_str(), a.started_at), ("127.0.0.1:9000", 300));
    let b = listed.iter().find(|s| s.id == "b").unwrap();
    assert_eq!((b.hostname.as_str(), b.last_seen), ("host-b", 400));
    assert_eq!(ds.remove_server("b").await.unwrap().id, "b");
    assert!(matches!(
        ds.remove_server("b").await,
        Err(DataStoreError::NotFound(_))
    ));
    assert_eq!(ds.list_servers().await.unwrap().len(), 1);
}

pub(crate) async fn each_server_replaces_only_its_own_crls(o: &dyn Opener) {
    let ds = o.open().await;
    let crl = |authority: &str, server: &str, der: u8| StoredCrl {
        authority_id: authority.into(),
        server_id: server.into(),
        der: vec![0x30, der],
    };
    ds.save_crls("a", vec![crl("ca-a1", "a", 1), crl("ca-a2", "a", 2)])
        .await
        .unwrap();
    ds.save_crls("b", vec![crl("ca-b1", "b", 3)]).await.unwrap();
    ds.save_crls("a", vec![crl("ca-a2", "a", 4)]).await.unwrap();
    assert_eq!(
        ds.crls().await.unwrap(),
        vec![crl("ca-a2", "a", 4), crl("ca-b1", "b", 3)]
    );
    let events = ds.events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.change == Change::CrlsChanged));
}
