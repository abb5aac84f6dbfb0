//! The anomaly detectors against the real server, each on a scripted
//! scenario: what an admin would see is one `anomaly` audit record naming
//! the kind, the subject and what was done, and the count in
//! `signet_server_anomalies_total{kind}`. (`new_source_address` is in
//! x509pop.rs, where host certificates are made.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, UNIX_EPOCH};

use signet_core::{Clock, SystemClock};

use signet_proto::node::{BatchSignX509SvidRequest, MintJwtSvidRequest, SyncRequest};
use signet_tests::http::{get, metric_value};
use signet_tests::node::{attest, node_client, sign_params};
use signet_tests::{my_uid_selector, wait, TestServer};
use tonic::Code;

/// Every detector armed with small thresholds and no learning period.
const CONFIG: &str = "[anomaly]
learning_period = \"0s\"
issuance_window = \"300ms\"
issuance_baseline_windows = 2
issuance_factor = 5
issuance_min = 50
attestation_failures = 3
max_clock_skew = \"30s\"

[anomaly.actions]
issuance_rate = \"throttle\"
clock_skew = \"ban\"
";

async fn server() -> (TestServer, tempfile::NamedTempFile) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), CONFIG).unwrap();
    let server = TestServer::start_with(&[
        "--config",
        file.path().to_str().unwrap(),
        "--telemetry-bind",
        "127.0.0.1:0",
    ])
    .await;
    (server, file)
}

/// The anomaly records, once there are `n`.
async fn anomalies(server: &TestServer, n: usize) -> Vec<serde_json::Value> {
    wait::until(
        &format!("{n} anomaly records"),
        Duration::from_secs(15),
        || async {
            let out = server.audit(&["show", "--kind", "anomaly", "--output", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let records = v["records"].as_array()?.clone();
            (records.len() >= n).then_some(records)
        },
    )
    .await
}

async fn counted(server: &TestServer, kind: &str) -> f64 {
    let (_, text) = get(&server.telemetry_addr(), "/metrics").await.unwrap();
    metric_value(
        &text,
        &format!(r#"signet_server_anomalies_total{{kind="{kind}"}}"#),
    )
    .unwrap_or(0.0)
}

struct Agent {
    id: String,
    client: signet_proto::node::node_client::NodeClient<tonic::transport::Channel>,
}

async fn agent(server: &TestServer) -> Agent {
    let (me, key) = attest(server, &server.join_token()).await.unwrap();
    Agent {
        client: node_client(&server.addr, &me.svid_chain, &key.serialize_der()).await,
        id: me.spiffe_id,
    }
}

async fn sign(a: &mut Agent, entry: &str, spiffe_id: &str, n: usize) {
    let params = (0..n).map(|_| sign_params(entry, spiffe_id).0).collect();
    let out = a
        .client
        .batch_sign_x509_svid(BatchSignX509SvidRequest { params })
        .await
        .unwrap()
        .into_inner();
    assert!(
        out.results.iter().all(|r| r.error_code == 0),
        "{:?}",
        out.results[0]
    );
}

#[tokio::test]
async fn a_burst_of_refused_attestations_from_one_address_and_for_one_token() {
    let (server, _config) = server().await;
    for _ in 0..3 {
        let err = attest(&server, "guessed-token").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    let records = anomalies(&server, 2).await;
    let subjects: Vec<&str> = records
        .iter()
        .map(|r| r["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&"address 127.0.0.1"), "{records:?}");
    // The token by its hash, never itself.
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("token ") && s.len() == 22),
        "{records:?}"
    );
    assert!(!serde_json::to_string(&records)
        .unwrap()
        .contains("guessed-token"));
    for r in &records {
        assert_eq!(r["anomaly"], "attestation_failures");
        assert_eq!(r["action"], "log");
    }
    assert_eq!(counted(&server, "attestation_failures").await, 2.0);
}

#[tokio::test]
async fn a_new_audience_and_a_new_agent_for_a_spiffe_id() {
    let (server, _config) = server().await;
    let mut one = agent(&server).await;
    let mut two = agent(&server).await;
    let id = server.id("/billing");
    // The same workload ID registered under both agents.
    let on_one = server.create_entry(&id, &one.id, &[&my_uid_selector()], &[]);
    let on_two = server.create_entry(&id, &two.id, &[&my_uid_selector()], &[]);

    let mint = |entry: &str, aud: &str| MintJwtSvidRequest {
        entry_id: entry.into(),
        audience: vec![aud.into()],
    };
    one.client.mint_jwt_svid(mint(&on_one, "db")).await.unwrap();
    one.client.mint_jwt_svid(mint(&on_one, "db")).await.unwrap();
    sign(&mut one, &on_one, &id, 1).await;
    // Nothing unusual yet: first sightings are learned.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counted(&server, "new_audience").await, 0.0);
    assert_eq!(counted(&server, "new_agent").await, 0.0);

    one.client
        .mint_jwt_svid(mint(&on_one, "payments"))
        .await
        .unwrap();
    sign(&mut two, &on_two, &id, 1).await;
    let records = anomalies(&server, 2).await;
    let of = |kind: &str| {
        records
            .iter()
            .find(|r| r["anomaly"] == kind)
            .unwrap()
            .clone()
    };
    let aud = of("new_audience");
    assert_eq!(aud["subject"], id.as_str());
    assert!(
        aud["detail"]
            .as_str()
            .unwrap()
            .contains("\"payments\"; before only for db"),
        "{aud}"
    );
    let moved = of("new_agent");
    assert_eq!(moved["subject"], id.as_str());
    assert!(
        moved["detail"].as_str().unwrap().contains(&two.id),
        "{moved}"
    );
    assert_eq!(records.len(), 2, "{records:?}");
}

#[tokio::test]
async fn an_issuance_spike_over_the_agents_baseline_throttles_it() {
    let (server, _config) = server().await;
    let mut a = agent(&server).await;
    let id = server.id("/batch");
    let entry = server.create_entry(&id, &a.id, &[&my_uid_selector()], &[]);
    // A steady few per window (300 ms) for more than two windows ...
    for _ in 0..4 {
        sign(&mut a, &entry, &id, 3).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(counted(&server, "issuance_rate").await, 0.0);
    // ... then far more than five times that, and over the minimum.
    sign(&mut a, &entry, &id, 120).await;
    let records = anomalies(&server, 1).await;
    assert_eq!(records[0]["anomaly"], "issuance_rate");
    assert_eq!(records[0]["subject"], a.id.as_str());
    assert_eq!(records[0]["action"], "throttle");
    assert!(records[0]["detail"]
        .as_str()
        .unwrap()
        .contains("SVIDs in 0.3s against a baseline"));
    assert_eq!(counted(&server, "issuance_rate").await, 1.0);
}

#[tokio::test]
async fn an_agent_reporting_a_skewed_clock_is_banned_as_configured() {
    let (server, _config) = server().await;
    let mut a = agent(&server).await;
    let mut good = agent(&server).await;
    let now_ms = |skew: i64| {
        // The server runs on the real clock: so does this report.
        SystemClock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            + skew
    };
    // Within the bound: nothing.
    let _fine = good
        .client
        .sync(SyncRequest {
            since_revision: 0,
            agent_time_unix_ms: now_ms(5_000),
        })
        .await
        .unwrap();
    let _skewed = a
        .client
        .sync(SyncRequest {
            since_revision: 0,
            agent_time_unix_ms: now_ms(-120_000),
        })
        .await
        .unwrap();
    let records = anomalies(&server, 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["anomaly"], "clock_skew");
    assert_eq!(records[0]["subject"], a.id.as_str());
    assert_eq!(records[0]["action"], "ban");
    assert!(records[0]["detail"]
        .as_str()
        .unwrap()
        .contains("behind the server's"));
    let banned = server.cli_ok(&["agent", "show", "--spiffe-id", &a.id, "--output", "json"]);
    assert!(
        banned.contains("\"banned\": true") || banned.contains("\"banned\":true"),
        "{banned}"
    );
}
