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
