//! An agent with more entries than one Sync message holds: a cold start
//! issues every SVID, and a snapshot that arrives in parts after a server
//! restart drops exactly the entries deleted meanwhile, keeps the rest
//! without re-issuing them, and the workload keeps being served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use signet_tests::http::{get, metric_value};
use signet_tests::{my_uid_selector, wait, TestAgent, TestServer};
use spiffe::WorkloadApiClient;

/// Three snapshot parts of 1000 entries (the server's part size).
const ENTRIES: usize = 2_500;
/// A selector no process has: the agent holds these SVIDs, serving none.
const NOBODY: &str = "unix:uid:4294967293";

async fn agent_metric(addr: &str, name: &str) -> Option<f64> {
    let (status, body) = get(addr, "/metrics").await.ok()?;
    (status == 200).then(|| metric_value(&body, name)).flatten()
}

async fn wait_held(addr: &str, n: usize) {
    wait::until(
        &format!("the agent to hold {n} SVIDs"),
        Duration::from_secs(120),
        || async {
            let held = agent_metric(addr, "signet_agent_svids_held").await?;
            (held == n as f64).then_some(())
        },
    )
    .await;
}

/// Entries in the agent's cache file that hold an SVID.
fn cached_svids(agent: &TestAgent) -> Option<usize> {
    let text = std::fs::read_to_string(agent.data_dir.join("workload_cache.json")).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    let entries = doc["entries"].as_array()?;
    Some(entries.iter().filter(|e| !e["svid"].is_null()).count())
}

#[tokio::test]
async fn a_snapshot_in_parts_after_a_server_restart_drops_only_what_was_deleted() {
    let mut server = TestServer::start().await;
    let token = server.join_token();
    let mut agent =
        TestAgent::spawn_with(&server, Some(&token), &["--telemetry-bind", "127.0.0.1:0"]);
    agent.wait_healthy().await;
    let metrics = agent.telemetry_addr();

    let mine = server.id("/large/mine");
    let mut entries = vec![serde_json::json!({
        "spiffe_id": mine,
        "parent_id": agent.spiffe_id,
        "selectors": [my_uid_selector()],
    })];
    entries.extend((1..ENTRIES).map(|i| {
        serde_json::json!({
            "spiffe_id": server.id(&format!("/large/{i}")),
            "parent_id": agent.spiffe_id,
            "selectors": [NOBODY],
        })
    }));
    let file = agent.dir.path().join("entries.json");
    std::fs::write(&file, serde_json::json!({ "entries": entries }).to_string()).unwrap();
    let ids: Vec<String> = server
        .cli_ok(&["entry", "create", "--data", file.to_str().unwrap()])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), ENTRIES);

    wait_held(&metrics, ENTRIES).await;
    wait::until(
        "the cache file to hold every SVID",
        Duration::from_secs(30),
        || async { (cached_svids(&agent)? == ENTRIES).then_some(()) },
    )
    .await;

    // Offline, one entry from each snapshot part goes; a server restart
    // forgets its event log, so the agent's return starts with a snapshot.
    agent.kill9();
    let gone = [&ids[10], &ids[1_500], &ids[2_400]];
    for id in gone {
        server.delete_entry(id);
    }
    server.restart().await;
    agent.respawn();
    agent.wait_healthy().await;
    let metrics = agent.telemetry_addr();

    wait_held(&metrics, ENTRIES - gone.len()).await;
    let issued = agent_metric(&metrics, "signet_agent_svids_issued_total").await;
    assert_eq!(issued, Some(0.0), "SVIDs kept from disk, none issued again");
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let svid = client.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), mine);
    wait::until(
        "the cache file to drop the deleted entries",
        Duration::from_secs(30),
        || async { (cached_svids(&agent)? == ENTRIES - gone.len()).then_some(()) },
    )
    .await;
    let text = std::fs::read_to_string(agent.data_dir.join("workload_cache.json")).unwrap();
    for id in gone {
        assert!(!text.contains(id.as_str()), "{id} is still cached");
    }
}
