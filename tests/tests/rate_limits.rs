//! `[rate_limit]` on the server and `[workload_api] rate_limit` on the
//! agent, against the real binaries: a caller over its limit gets
//! RESOURCE_EXHAUSTED with a retry hint (the standard RetryInfo detail), the
//! refusal is counted and audited, and every other caller is served as
//! before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use signet_proto::node::{BatchSignX509SvidRequest, MintJwtSvidRequest};
use signet_runtime::ratelimit::status::retry_after;
use signet_tests::http::{get, metric_value};
use signet_tests::node::{attest, node_client, sign_params};
use signet_tests::peer::{dir_for, peer_as, report, NOBODY};
use signet_tests::{current_uid, my_uid_selector, wait, TestAgent, TestServer};
use tonic::Code;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn config(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

/// The audit records of `kind`, as `audit show --output json` prints them.
fn audited(server: &TestServer, kind: &str) -> Vec<serde_json::Value> {
    let out = server.audit(&["show", "--kind", kind, "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["records"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_agent_past_its_signing_limit_is_refused_and_others_are_not() {
    let file = config(
        "[rate_limit]\nx509_signing = { per_second = 0.1, burst = 1024 }\njwt_minting = { per_second = 0.1, burst = 2 }\n",
    );
    let server = TestServer::start_with(&[
        "--config",
        s(file.path()),
        "--telemetry-bind",
        "127.0.0.1:0",
    ])
    .await;
    let (noisy, noisy_key) = attest(&server, &server.join_token()).await.unwrap();
    let (quiet, quiet_key) = attest(&server, &server.join_token()).await.unwrap();
    let noisy_id = server.id("/noisy");
    let noisy_entry = server.create_entry(&noisy_id, &noisy.spiffe_id, &[&my_uid_selector()], &[]);
    let quiet_id = server.id("/quiet");
    let quiet_entry = server.create_entry(&quiet_id, &quiet.spiffe_id, &[&my_uid_selector()], &[]);
    let mut noisy_client =
        node_client(&server.addr, &noisy.svid_chain, &noisy_key.serialize_der()).await;
    let mut quiet_client =
        node_client(&server.addr, &quiet.svid_chain, &quiet_key.serialize_der()).await;

    // A full batch takes the whole bucket ...
    let batch: Vec<_> = (0..1024)
        .map(|_| sign_params(&noisy_entry, &noisy_id).0)
        .collect();
    let signed = noisy_client
        .batch_sign_x509_svid(BatchSignX509SvidRequest { params: batch })
        .await
        .unwrap()
        .into_inner();
    assert!(signed.results.iter().all(|r| r.error_code == 0));
    // ... so the next CSR is refused, saying when to come back.
    let refused = noisy_client
        .batch_sign_x509_svid(BatchSignX509SvidRequest {
            params: vec![sign_params(&noisy_entry, &noisy_id).0],
        })
        .await
        .expect_err("over the signing limit");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("X.509-SVID signing for spiffe://example.org/signet/agent/join_token/"),
        "{}",
        refused.message()
    );
    let hint = retry_after(&refused).expect("a RetryInfo detail");
    assert!(
        hint > Duration::from_secs(5) && hint <= Duration::from_secs(10),
        "one CSR at 0.1/s: {hint:?}"
    );
    // The other agent is served as before.
    let theirs = quiet_client
        .batch_sign_x509_svid(BatchSignX509SvidRequest {
            params: vec![sign_params(&quiet_entry, &quiet_id).0],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(theirs.results[0].error_code, 0);

    // JWT minting has a bucket of its own.
    let mint = |entry_id: String| MintJwtSvidRequest {
        entry_id,
        audience: vec!["db".into()],
    };
    for _ in 0..2 {
        noisy_client
            .mint_jwt_svid(mint(noisy_entry.clone()))
            .await
            .unwrap();
    }
    let refused = noisy_client
        .mint_jwt_svid(mint(noisy_entry.clone()))
        .await
        .expect_err("over the minting limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(retry_after(&refused).is_some());
    quiet_client
        .mint_jwt_svid(mint(quiet_entry.clone()))
        .await
        .unwrap();

    // Counted, and audited once per agent and limit.
    let (_, metrics) = get(&server.telemetry_addr(), "/metrics").await.unwrap();
    assert_eq!(
        metric_value(
            &metrics,
            r#"signet_server_rate_limited_total{limit="x509_signing"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"signet_server_rate_limited_total{limit="jwt_minting"}"#
        ),
        Some(1.0)
    );
    let records = wait::until(
        "two rate_limited records",
        Duration::from_secs(10),
        || async {
            let r = audited(&server, "rate_limited");
            (r.len() == 2).then_some(r)
        },
    )
    .await;
    for (record, limit) in records.iter().zip(["x509_signing", "jwt_minting"]) {
        assert_eq!(record["limit"], limit, "{records:?}");
        assert_eq!(record["subject"], noisy.spiffe_id.as_str());
        assert!(record["retry_after_ms"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn attestations_over_the_address_limit_wait_and_then_succeed() {
    let file = config("[rate_limit]\nattestation = { per_second = 0.25, burst = 2 }\n");
    let server = TestServer::start_with(&["--config", s(file.path())]).await;
    let tokens: Vec<String> = (0..3).map(|_| server.join_token()).collect();
    attest(&server, &tokens[0]).await.unwrap();
    attest(&server, &tokens[1]).await.unwrap();
    let token = tokens[2].clone();
    let refused = attest(&server, &token).await.expect_err("a third at once");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("rate limit: node attestation from 127.0.0.1"),
        "{}",
        refused.message()
    );
    assert!(retry_after(&refused).unwrap() <= Duration::from_secs(4));
    // The refusal consumed nothing: a real agent with the same token waits
    // out the hint and attests.
    let mut agent = TestAgent::spawn(&server, Some(&token));
    agent.wait_healthy().await;
    let records = audited(&server, "rate_limited");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["limit"], "attestation");
    assert_eq!(records[0]["subject"], "127.0.0.1");
}

#[tokio::test]
async fn the_workload_api_keeps_serving_while_another_uid_floods_it() {
    let server = TestServer::start().await;
    let file = config("[workload_api]\nrate_limit = { per_second = 20, burst = 40 }\n");
    let mut agent = TestAgent::spawn_with(
        &server,
        Some(&server.join_token()),
        &[
            "--config",
            s(file.path()),
            "--telemetry-bind",
            "127.0.0.1:0",
        ],
    );
    agent.wait_healthy().await;
    agent.open_to_all_users();
    let id = server.id("/legit");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    let client = spiffe::WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    wait::until("the legitimate SVID", Duration::from_secs(20), || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;

    // uid 65534 floods FetchJWTSVID while this uid keeps asking.
    let dir = dir_for(NOBODY);
    let out = dir.path().join("flood.json");
    let mut flood = peer_as(
        NOBODY,
        &[
            "call-flood",
            "--socket",
            s(&agent.socket_path),
            "--calls",
            "3000",
            "--out",
            s(&out),
        ],
    )
    .spawn()
    .unwrap();
    let mut served = 0;
    for _ in 0..20 {
        let jwt = client.fetch_jwt_svid(&["db"], None).await.unwrap();
        assert_eq!(jwt.spiffe_id().to_string(), id);
        served += 1;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(served, 20);
    assert_ne!(current_uid(), NOBODY);
    tokio::task::spawn_blocking(move || flood.wait())
        .await
        .unwrap()
        .unwrap();
    let got = report(&out, Duration::from_secs(30)).await;
    let codes = &got["codes"];
    let exhausted = codes["ResourceExhausted"].as_u64().unwrap_or(0);
    let passed = codes["PermissionDenied"].as_u64().unwrap_or(0);
    let elapsed_s = got["elapsed_ms"].as_f64().unwrap() / 1000.0;
    assert_eq!(exhausted + passed, 3000, "{got}");
    // The burst and the rate over the flood's time, and no more.
    assert!(
        (passed as f64) <= 40.0 + 20.0 * elapsed_s + 2.0,
        "{passed} passed in {elapsed_s} s: {got}"
    );
    assert!(got["retry_after_ms"].as_u64().unwrap() >= 1, "{got}");
    let (_, metrics) = get(&agent.telemetry_addr(), "/metrics").await.unwrap();
    assert_eq!(
        metric_value(&metrics, "signet_agent_workload_api_rate_limited_total"),
        Some(exhausted as f64)
    );
}
