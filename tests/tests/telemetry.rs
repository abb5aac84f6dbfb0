//! /live, /ready and /metrics of both daemons, scraped over HTTP during a
//! real run, with issuance counters that move.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use signet_tests::http::{get, metric_value};
use signet_tests::{my_uid_selector, wait, TestAgent, TestServer};
use spiffe::WorkloadApiClient;

#[tokio::test]
async fn health_and_metrics_endpoints_report_a_live_system() {
    let server = TestServer::start_with(&["--telemetry-bind", "127.0.0.1:0"]).await;
    let server_http = server.telemetry_addr();
    let token = server.join_token();
    let mut agent =
        TestAgent::spawn_with(&server, Some(&token), &["--telemetry-bind", "127.0.0.1:0"]);
    agent.wait_healthy().await;
    let agent_http = agent.telemetry_addr();

    for addr in [&server_http, &agent_http] {
        assert_eq!(get(addr, "/live").await.unwrap().0, 200, "{addr} /live");
        wait::until("/ready to answer 200", Duration::from_secs(20), || async {
            (get(addr, "/ready").await.ok()?.0 == 200).then_some(())
        })
        .await;
    }
    let (_, before) = get(&server_http, "/metrics").await.unwrap();
    let issued_before = metric_value(&before, "signet_server_x509_svids_issued_total")
        .expect("server issuance counter");

    server.create_entry(
        &server.id("/metered"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    wait::until("an SVID", Duration::from_secs(20), || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;

    let (_, after) = get(&server_http, "/metrics").await.unwrap();
    let issued_after = metric_value(&after, "signet_server_x509_svids_issued_total").unwrap();
    assert!(
        issued_after > issued_before,
        "server counter moved: {issued_before} -> {issued_after}"
    );
    assert!(metric_value(&after, "signet_server_connected_agents").unwrap() >= 1.0);

    let (_, agent_metrics) = get(&agent_http, "/metrics").await.unwrap();
    assert!(
        metric_value(&agent_metrics, "signet_agent_svids_issued_total").unwrap() >= 1.0,
        "{agent_metrics}"
    );
    assert!(metric_value(&agent_metrics, "signet_agent_svids_held").unwrap() >= 1.0);
    assert!(metric_value(&agent_metrics, "signet_agent_seconds_to_next_expiry").unwrap() > 0.0);
}
