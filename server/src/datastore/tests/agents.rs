//! Join tokens and agents.

use std::sync::Arc;

use super::{agent, entry, Opener};
use crate::datastore::DataStoreError;

pub(crate) async fn join_token_is_burned_exactly_once_under_concurrent_attests(o: &dyn Opener) {
    // Two handles: on PostgreSQL, two servers burning one token at once.
    let (a, b) = (o.open().await, o.open().await);
    a.create_join_token("tok", 5000).await.unwrap();
    let (ra, rb) = tokio::join!(
        a.attest_with_join_token("tok", 1000, agent("tok")),
        b.attest_with_join_token("tok", 1000, agent("tok")),
    );
    let results = [ra, rb];
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .any(|r| matches!(r, Err(DataStoreError::JoinTokenNotFound))));
    assert!(matches!(
        a.attest_with_join_token("tok", 1000, agent("tok")).await,
        Err(DataStoreError::JoinTokenNotFound)
    ));
    assert_eq!(a.list_agents().await.unwrap().len(), 1);
}

pub(crate) async fn expired_join_token_is_refused(o: &dyn Opener) {
    let ds = o.open().await;
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
    assert!(matches!(
        ds.create_join_token("old", 1000).await,
        Err(DataStoreError::AlreadyExists(_))
    ));
    assert_eq!(ds.prune_join_tokens(1001).await.unwrap(), 1);
}

pub(crate) async fn banned_agent_cannot_attest_again_and_evicted_one_is_gone(o: &dyn Opener) {
    let ds = o.open().await;
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
    assert!(matches!(
        ds.attest_agent(agent("t1")).await,
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
    assert!(matches!(
        ds.ban_agent(&a.spiffe_id).await,
        Err(DataStoreError::NotFound(_))
    ));
    // Each ban and eviction is an event, in order.
    let kinds: Vec<String> = ds
        .events_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| format!("{:?}", e.change))
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds[0].contains("banned: true"), "{kinds:?}");
    assert!(kinds[1].contains("banned: false"), "{kinds:?}");
}

pub(crate) async fn concurrent_agent_attestations_all_succeed(o: &dyn Opener) {
    let ds = o.open().await;
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

pub(crate) async fn data_survives_reopening(o: &dyn Opener) {
    let before;
    {
        let ds = o.open().await;
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
    let ds: Arc<dyn crate::datastore::DataStore> = o.open().await;
    assert_eq!(ds.get_entry("entry-7").await.unwrap(), Some(before.clone()));
    assert_eq!(ds.current_revision().await.unwrap(), before.entry.revision);
    ds.attest_with_join_token("keep", 1000, agent("keep"))
        .await
        .unwrap();
    assert_eq!(ds.prune_join_tokens(10_000).await.unwrap(), 0);
}
