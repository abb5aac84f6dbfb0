//! Edge nodes: an agent on a host of its own (a network namespace joined by
//! a veth pair) loses its uplink for real, keeps serving its workloads from
//! what it holds, and when its own SVID expired in the meantime, attests
//! again by itself once the link is back, with a join token an admin left in
//! `--reattest-token-file` (and says so while there is none), never a
//! silent dead loop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use signet_tests::agent::AgentOptions;
use signet_tests::netns::Host;
use signet_tests::{my_uid_selector, wait, x509pop, TestAgent, TestServer};
use spiffe::WorkloadApiClient;

const PATIENCE: Duration = Duration::from_secs(30);

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_token_agent_cut_off_past_its_svid_attests_again_with_a_token_left_for_it() {
    let edge = Host::start();
    // The agent's own SVID lives 4 s; workloads' (their entry says) 1 h.
    let server =
        TestServer::start_listening_on(&edge.host_ip, &["--default-x509-svid-ttl", "4s"]).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("reattest-token");
    let token = server.join_token();
    let mut agent = TestAgent::spawn_opts(
        &server,
        Some(&token),
        AgentOptions {
            prefix: edge.prefix(),
            extra: vec![
                "--reattest-token-file".into(),
                token_file.display().to_string(),
            ],
            ..AgentOptions::default()
        },
    );
    agent.wait_healthy().await;
    let workload_id = server.id("/edge/sensor");
    server.create_entry(
        &workload_id,
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &["--x509-svid-ttl", "3600"],
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    wait::until("the workload's SVID", PATIENCE, || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;

    // The uplink goes down for longer than the agent SVID lives.
    edge.cut();
    let report = wait::until("the agent saying what it needs", PATIENCE, || async {
        let out = agent.cli(&["healthcheck"]);
        let err = stderr(&out);
        (!out.status.success() && err.contains("no join token in")).then_some(err)
    })
    .await;
    assert!(
        report.contains("expired before it could be renewed"),
        "{report}"
    );
    assert!(
        report.contains(&token_file.display().to_string()),
        "{report}"
    );
    // Meanwhile the workload is still served what the agent holds.
    let held = client.fetch_x509_svid().await.unwrap();
    assert_eq!(held.spiffe_id().to_string(), workload_id);

    // An admin leaves a token; the link comes back; the agent attests
    // again by itself, under the new token's agent ID.
    let new_token = server.join_token();
    std::fs::write(&token_file, format!("{new_token}\n")).unwrap();
    edge.restore();
    let new_agent = server.id(&format!("/signet/agent/join_token/{new_token}"));
    wait::until("the agent healthy again", PATIENCE, || async {
        agent.cli(&["healthcheck"]).status.success().then_some(())
    })
    .await;
    let listed = server.cli_ok(&["agent", "list", "--output", "json"]);
    assert!(listed.contains(&new_agent), "{listed}");
    // Its workloads follow the new agent ID.
    let moved = server.id("/edge/sensor-2");
    server.create_entry(&moved, &new_agent, &[&my_uid_selector()], &[]);
    wait::until("an SVID through the new agent ID", PATIENCE, || async {
        let svid = client.fetch_x509_svid().await.ok()?;
        (svid.spiffe_id().to_string() == moved).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_x509pop_agent_cut_off_past_its_svid_attests_again_by_itself_with_its_host_key() {
    let edge = Host::start();
    let ca = x509pop::org_ca("Edge Org CA");
    let dir = tempfile::tempdir().unwrap();
    let server_config = x509pop::server_config(dir.path(), &ca, "");
    let server = TestServer::start_listening_on(
        &edge.host_ip,
        &[
            "--config",
            server_config.to_str().unwrap(),
            "--default-x509-svid-ttl",
            "4s",
        ],
    )
    .await;
    let (leaf, key) = x509pop::host_cert(&ca, "edge-7");
    let agent_config = x509pop::agent_config(dir.path(), &leaf, &key, &ca);
    let mut agent = TestAgent::spawn_opts(
        &server,
        None,
        AgentOptions {
            prefix: edge.prefix(),
            extra: vec!["--config".into(), agent_config.display().to_string()],
            ..AgentOptions::default()
        },
    );
    agent.wait_healthy().await;
    let agent_id = server.id(&format!(
        "/signet/agent/x509pop/{}",
        x509pop::sha1_hex(&leaf)
    ));
    let workload_id = server.id("/edge/camera");
    server.create_entry(
        &workload_id,
        &agent_id,
        &[&my_uid_selector()],
        &["--x509-svid-ttl", "3600"],
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    wait::until("the workload's SVID", PATIENCE, || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;

    // Down for longer than the agent's 4 s SVID: it cannot renew, and says so.
    edge.cut();
    let report = wait::until("the agent reporting its expired SVID", PATIENCE, || async {
        let out = agent.cli(&["healthcheck"]);
        let err = stderr(&out);
        (!out.status.success() && err.contains("expired before it could be renewed")).then_some(err)
    })
    .await;
    assert!(!report.contains("no join token"), "{report}");
    let held = client.fetch_x509_svid().await.unwrap();
    assert_eq!(held.spiffe_id().to_string(), workload_id);

    // Back: no admin step; it proves its host key again, under the same ID.
    edge.restore();
    wait::until("the agent healthy again", PATIENCE, || async {
        agent.cli(&["healthcheck"]).status.success().then_some(())
    })
    .await;
    assert!(
        agent
            .log_text()
            .contains("attested again after the agent SVID expired"),
        "{}",
        agent.log_text()
    );
    let renewed = server.id("/edge/camera-2");
    server.create_entry(&renewed, &agent_id, &[&my_uid_selector()], &[]);
    wait::until(
        "a new entry served after re-attesting",
        PATIENCE,
        || async {
            let ctx = client.fetch_x509_context().await.ok()?;
            ctx.svids()
                .iter()
                .any(|s| s.spiffe_id().to_string() == renewed)
                .then_some(())
        },
    )
    .await;
}
