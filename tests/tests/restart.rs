//! Restarts lose nothing: the server keeps its CA, entries and agents; the
//! agent keeps its identity without a new join token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use signet_tests::{my_uid_selector, start_pair, wait};
use spiffe::WorkloadApiClient;

async fn fetch_id(endpoint: &str) -> String {
    let client = WorkloadApiClient::connect_to(endpoint).await.unwrap();
    let svid = wait::until("an SVID", Duration::from_secs(30), || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;
    svid.spiffe_id().to_string()
}

#[tokio::test]
async fn server_restart_keeps_ca_entries_and_agents() {
    let (mut server, agent) = start_pair(&[]).await;
    let id = server.id("/workload/persist");
    let entry = server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    assert_eq!(fetch_id(&agent.endpoint()).await, id);
    let bundle = server.bundle_der();
    let agents = server.cli_ok(&["agent", "list"]);
    assert!(agents.contains(&agent.spiffe_id));

    server.restart().await;

    assert_eq!(server.bundle_der(), bundle, "same CA after restart");
    let entries = server.cli_ok(&["entry", "show", "--spiffe-id", &id]);
    assert!(entries.contains(&entry), "entry kept: {entries}");
    assert!(
        server.cli_ok(&["agent", "list"]).contains(&agent.spiffe_id),
        "agent kept"
    );
    assert_eq!(
        fetch_id(&agent.endpoint()).await,
        id,
        "agent still serves after the server restart"
    );
}

#[tokio::test]
async fn agent_restart_keeps_its_identity_without_a_new_token() {
    let (server, mut agent) = start_pair(&[]).await;
    let id = server.id("/workload/again");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    assert_eq!(fetch_id(&agent.endpoint()).await, id);

    agent.restart().await;

    assert_eq!(fetch_id(&agent.endpoint()).await, id);
    let agents = server.cli_ok(&["agent", "list", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&agents).unwrap();
    let list = v["agents"].as_array().expect("agents array");
    assert_eq!(list.len(), 1, "no second attestation: {agents}");
    assert_eq!(list[0]["spiffe_id"], agent.spiffe_id);
}

/// The entry IDs a Sync message carries.
fn entry_ids(msg: &signet_proto::node::SyncResponse) -> Vec<String> {
    msg.entries.iter().map(|e| e.id.clone()).collect()
}

#[tokio::test]
async fn a_sync_resumed_from_its_revision_after_a_server_restart_gets_what_it_missed_and_what_follows(
) {
    use signet_proto::node::SyncRequest;
    let (mut server, agent) = start_pair(&[]).await;
    let kept = server.create_entry(
        &server.id("/kept"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let (chain, key) = agent.identity();
    let mut node = signet_tests::node::node_client(&server.addr, &chain, &key).await;
    let mut stream = node
        .sync(SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.snapshot);
    assert_eq!(entry_ids(&first), vec![kept.clone()]);
    let seen = first.revision;
    assert!(seen > 0);
    drop(stream);

    // While nobody listens: one entry goes, one comes; then a restart.
    let added = server.create_entry(
        &server.id("/added"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    server.delete_entry(&kept);
    server.restart().await;

    let mut node = signet_tests::node::node_client(&server.addr, &chain, &key).await;
    let mut stream = node
        .sync(SyncRequest {
            since_revision: seen,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The restarted server reads what the stream missed from its event
    // log: the two changes, in order, and no snapshot.
    let mut missed = Vec::new();
    let mut resumed_at = seen;
    while missed.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the missed events on the resumed stream")
            .unwrap()
            .unwrap();
        assert!(!m.snapshot, "served from the log, not a snapshot: {m:?}");
        assert!(m.revision > resumed_at, "{} <= {resumed_at}", m.revision);
        resumed_at = m.revision;
        if !m.entries.is_empty() || !m.removed_entry_ids.is_empty() {
            missed.push((entry_ids(&m), m.removed_entry_ids.clone()));
        }
    }
    assert_eq!(
        missed,
        [(vec![added.clone()], vec![]), (vec![], vec![kept.clone()])],
        "the entry added, then the one deleted"
    );
    // And the stream goes on with what follows.
    let later = server.create_entry(
        &server.id("/later"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = stream.message().await.unwrap().unwrap();
            if !m.entries.is_empty() {
                return m;
            }
        }
    })
    .await
    .expect("the new entry on the resumed stream");
    assert!(!next.snapshot);
    assert_eq!(entry_ids(&next), vec![later]);
    assert!(next.revision > resumed_at);
}
