//! The agent's own audit log of Workload API decisions, with the real
//! binaries: each decision is a line of its hash chain in the data dir,
//! its head reaches the server's chain, and `signet-agent audit verify`
//! names an edited record, and a consistent rewrite once checked against
//! the checkpoints the server holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use signet_core::audit_chain::{link, to_hex, GENESIS};
use signet_tests::bins::bins;
use signet_tests::{current_uid, my_uid_selector, wait, TestAgent, TestServer};

fn verify(data_dir: &Path, checkpoints: Option<&Path>) -> (bool, Value) {
    let mut cmd = Command::new(&bins().agent);
    cmd.args(["audit", "verify", "--output", "json", "--data-dir"])
        .arg(data_dir);
    if let Some(c) = checkpoints {
        cmd.arg("--checkpoints").arg(c);
    }
    let out = cmd.output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

#[tokio::test]
async fn decisions_are_chained_reported_and_checked_against_the_server() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[audit]\ncheckpoint_interval = \"1s\"\n").unwrap();
    let mut agent = TestAgent::spawn_with(
        &server,
        Some(&server.join_token()),
        &["--config", config.to_str().unwrap()],
    );
    agent.wait_healthy().await;
    let id = server.id("/audited");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    let client = spiffe::WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    wait::until("the SVID", Duration::from_secs(20), || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;
    // Issued now: this call is served at once.
    client.fetch_x509_svid().await.unwrap();
    let jwt = client.fetch_jwt_svid(&["db"], None).await.unwrap();
    client.validate_jwt_token("db", jwt.token()).await.unwrap();

    // The log in the data dir: one line per decision, served IDs and caller.
    let log = agent.data_dir.join("workload_audit.jsonl");
    let lines: Vec<Value> = wait::until(
        "three decisions in the log",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(&log).ok()?;
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let calls: Vec<String> = lines
                .iter()
                .map(|l| {
                    serde_json::from_str::<Value>(l["record"].as_str().unwrap()).unwrap()["call"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect();
            (calls.contains(&"fetch_jwt_svid".to_owned())
                && calls.contains(&"validate_jwt_svid".to_owned()))
            .then_some(lines)
        },
    )
    .await;
    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l["record"].as_str().unwrap()).unwrap())
        .collect();
    let served = records
        .iter()
        // (A stream opened before its SVID was issued is recorded with
        // nothing served yet.)
        .find(|r| {
            r["call"] == "fetch_x509_svid" && r["outcome"] == "ok" && r["served"][0].is_string()
        })
        .expect("an X.509-SVID served");
    assert_eq!(served["served"][0], id.as_str());
    assert_eq!(served["uid"], current_uid());
    assert!(served["selectors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == &Value::from(my_uid_selector())));
    let minted = records
        .iter()
        .find(|r| r["call"] == "fetch_jwt_svid")
        .unwrap();
    assert_eq!(minted["served"][0], id.as_str());
    let validated = records
        .iter()
        .find(|r| r["call"] == "validate_jwt_svid")
        .unwrap();
    assert_eq!(validated["served"][0], id.as_str(), "{records:?}");
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains(&jwt.token().to_string()),
        "no token in the log"
    );

    // The head reaches the server's chain.
    let n = lines.len() as u64;
    let from_server = dir.path().join("checkpoints.json");
    wait::until(
        "the server to hold the log's head",
        Duration::from_secs(20),
        || async {
            let out = server.audit(&[
                "show",
                "--kind",
                "agent_audit_checkpoint",
                "--agent",
                &agent.spiffe_id,
                "--output",
                "json",
            ]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let top = v["records"]
                .as_array()?
                .iter()
                .filter_map(|r| r["log_seq"].as_u64())
                .max()?;
            (top >= n).then(|| std::fs::write(&from_server, &out.stdout).unwrap())
        },
    )
    .await;
    agent.stop();
    let (ok, summary) = verify(&agent.data_dir, Some(&from_server));
    assert!(ok, "{summary}");
    assert!(summary["checkpoints"].as_u64().unwrap() >= 1, "{summary}");

    // An edited record is named.
    let original = std::fs::read_to_string(&log).unwrap();
    let mut edited: Vec<Value> = original
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rec = edited[1]["record"]
        .as_str()
        .unwrap()
        .replace(&format!("\"uid\":{}", current_uid()), "\"uid\":4242");
    edited[1]["record"] = Value::from(rec);
    let write = |lines: &[Value]| {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&log, text).unwrap();
    };
    write(&edited);
    let (ok, v) = verify(&agent.data_dir, None);
    assert!(!ok);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("record 2 was altered"),
        "{v}"
    );

    // Every hash recomputed: only the server's checkpoints catch it.
    let mut prev = GENESIS;
    for l in edited.iter_mut() {
        prev = link(&prev, l["record"].as_str().unwrap());
        l["hash"] = Value::from(to_hex(&prev));
    }
    write(&edited);
    assert!(verify(&agent.data_dir, None).0, "consistent by itself");
    let (ok, v) = verify(&agent.data_dir, Some(&from_server));
    assert!(!ok);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("does not match checkpoint"),
        "{v}"
    );
}
