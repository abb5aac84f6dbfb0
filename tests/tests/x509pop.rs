//! x509pop node attestation with the real binaries: an edge node proves it
//! holds a host certificate from the organisation's CA, and its workloads
//! get SVIDs through a node-alias entry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rcgen::KeyPair;
use signet_proto::node::{attest_params, X509PopParams};
use signet_tests::node::AttestExchange;
use signet_tests::x509pop::{agent_config, host_cert, org_ca, server_config, sha1_hex, OrgCa};
use signet_tests::{my_uid_selector, wait, TestAgent, TestServer};
use spiffe::WorkloadApiClient;
use tonic::Code;

async fn x509pop_server(ca: &OrgCa) -> (TestServer, tempfile::TempDir) {
    x509pop_server_with(ca, "").await
}

/// Like [`x509pop_server`], `more` appended to its config file.
async fn x509pop_server_with(ca: &OrgCa, more: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = server_config(dir.path(), ca, more);
    let server = TestServer::start_with(&["--config", config.to_str().unwrap()]).await;
    (server, dir)
}

#[tokio::test]
async fn edge_node_attests_with_its_host_certificate_and_serves_a_node_alias_workload() {
    let ca = org_ca("Example Org CA");
    let (server, dir) = x509pop_server(&ca).await;
    let (leaf, key) = host_cert(&ca, "edge-1");
    let config = agent_config(dir.path(), &leaf, &key, &ca);

    let mut agent = TestAgent::spawn_with(&server, None, &["--config", config.to_str().unwrap()]);
    agent.wait_healthy().await;
    let agent_id = server.id(&format!("/signet/agent/x509pop/{}", sha1_hex(&leaf)));
    let shown = wait::until(
        "the x509pop agent on the server",
        Duration::from_secs(20),
        || async {
            let out = server.cli(&[
                "agent",
                "show",
                "--spiffe-id",
                &agent_id,
                "--output",
                "json",
            ]);
            out.status
                .success()
                .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
        },
    )
    .await;
    let selectors: Vec<String> = serde_json::from_value(shown["selectors"].clone()).unwrap();
    assert!(
        selectors.contains(&"x509pop:subject:cn:edge-1".to_string()),
        "{selectors:?}"
    );
    assert!(
        selectors.contains(&format!(
            "x509pop:ca:fingerprint:{}",
            sha1_hex(ca.cert.der())
        )),
        "{selectors:?}"
    );
    assert!(
        selectors.contains(&"x509pop:san:dns:edge-1.example.net".to_string()),
        "{selectors:?}"
    );

    // A node alias for every edge-1 host, and a workload under it.
    let alias = server.id("/fleet/edge-1");
    server.cli_ok(&[
        "entry",
        "create",
        "--node",
        "--spiffe-id",
        &alias,
        "--selector",
        "x509pop:subject:cn:edge-1",
    ]);
    let workload = server.id("/edge/telemetry");
    server.create_entry(&workload, &alias, &[&my_uid_selector()], &[]);

    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let svid = wait::until(
        "an SVID through the node alias",
        Duration::from_secs(20),
        || async { client.fetch_x509_svid().await.ok() },
    )
    .await;
    assert_eq!(svid.spiffe_id().to_string(), workload);

    // Evicted, the node attests again by itself (no token needed)...
    let first_serial = signet_tests::checks::serial_hex(svid.leaf().as_bytes());
    server.cli_ok(&["agent", "evict", "--spiffe-id", &agent_id]);
    agent.restart().await;
    wait::until("the re-attested agent", Duration::from_secs(20), || async {
        server
            .cli(&["agent", "show", "--spiffe-id", &agent_id])
            .status
            .success()
            .then_some(())
    })
    .await;
    // ...and its workloads are served again: a new SVID, issued after it.
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let again = wait::until(
        "an SVID after re-attestation",
        Duration::from_secs(20),
        || async {
            let svid = client.fetch_x509_svid().await.ok()?;
            (signet_tests::checks::serial_hex(svid.leaf().as_bytes()) != first_serial)
                .then_some(svid)
        },
    )
    .await;
    assert_eq!(again.spiffe_id().to_string(), workload);
}

/// Runs the x509pop exchange by hand: returns the server's challenge, or the
/// refusal.
async fn challenge(
    server: &TestServer,
    chain: Vec<Vec<u8>>,
    answer: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<(), tonic::Status> {
    challenge_from(server, None, chain, answer).await
}

/// [`challenge`] on a connection from `source`.
async fn challenge_from(
    server: &TestServer,
    source: Option<std::net::IpAddr>,
    chain: Vec<Vec<u8>>,
    answer: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<(), tonic::Status> {
    let method = attest_params::Method::X509pop(X509PopParams { cert_chain: chain });
    let exchange = AttestExchange::begin(server, source, method).await?;
    let response = answer(&exchange.challenge);
    exchange.answer(response).await
}

fn sign(key: &KeyPair, msg: &[u8]) -> Vec<u8> {
    let pkcs8 = key.serialize_der();
    let rng = ring::rand::SystemRandom::new();
    let kp = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &pkcs8,
        &rng,
    )
    .unwrap();
    kp.sign(&rng, msg).unwrap().as_ref().to_vec()
}

#[tokio::test]
async fn wrong_ca_wrong_key_and_replayed_nonce_are_refused() {
    let ca = org_ca("Example Org CA");
    let (server, _dir) = x509pop_server(&ca).await;
    let (leaf, key) = host_cert(&ca, "edge-2");

    // The genuine exchange works; keep its nonce and answer for a replay.
    let mut replay: Option<(Vec<u8>, Vec<u8>)> = None;
    challenge(&server, vec![leaf.clone()], |nonce| {
        let sig = sign(&key, nonce);
        replay = Some((nonce.to_vec(), sig.clone()));
        sig
    })
    .await
    .expect("a host with a certificate of the trusted CA attests");
    let (old_nonce, old_answer) = replay.unwrap();

    // Replayed answer to an old nonce on a new exchange.
    let err = challenge(&server, vec![leaf.clone()], |nonce| {
        assert_ne!(nonce, old_nonce.as_slice(), "a fresh nonce each time");
        old_answer.clone()
    })
    .await
    .expect_err("a replayed answer is refused");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Proof with another key than the certificate's.
    let other = KeyPair::generate().unwrap();
    let err = challenge(&server, vec![leaf.clone()], |nonce| sign(&other, nonce))
        .await
        .expect_err("wrong key");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // A certificate from a CA the server does not trust: refused before any challenge.
    let rogue = org_ca("Rogue CA");
    let (rogue_leaf, rogue_key) = host_cert(&rogue, "edge-2");
    let err = challenge(&server, vec![rogue_leaf], |nonce| sign(&rogue_key, nonce))
        .await
        .expect_err("untrusted CA");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("not trusted"), "{}", err.message());
}

#[tokio::test]
async fn an_agent_attesting_from_an_address_it_never_used_is_an_anomaly() {
    let ca = org_ca("Example Org CA");
    let (server, _dir) = x509pop_server_with(&ca, "[anomaly]\nlearning_period = \"0s\"\n").await;
    let (leaf, key) = host_cert(&ca, "edge-9");
    let from = |ip: &str| Some(ip.parse::<std::net::IpAddr>().unwrap());
    // The first address is learned; attesting again from it is normal.
    for _ in 0..2 {
        challenge_from(&server, from("127.0.0.1"), vec![leaf.clone()], |n| {
            sign(&key, n)
        })
        .await
        .unwrap();
    }
    challenge_from(&server, from("127.0.0.2"), vec![leaf.clone()], |n| {
        sign(&key, n)
    })
    .await
    .unwrap();
    let records = wait::until(
        "a new_source_address record",
        Duration::from_secs(15),
        || async {
            let out = server.audit(&["show", "--kind", "anomaly", "--output", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let records = v["records"].as_array()?.clone();
            (!records.is_empty()).then_some(records)
        },
    )
    .await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["anomaly"], "new_source_address");
    let fp: String = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &leaf)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        records[0]["subject"],
        server.id(&format!("/signet/agent/x509pop/{fp}")).as_str()
    );
    assert_eq!(
        records[0]["detail"],
        "attested from 127.0.0.2; before only from 127.0.0.1"
    );
}
