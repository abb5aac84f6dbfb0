//! `[upstream_authority.signet]`: an edge site's server gets its CA signed
//! by the organisation's (upstream) server through a `--downstream` entry,
//! so edge workloads chain to the upstream root alone; with its uplink cut
//! the edge keeps issuing until its own CA expires, then says why it stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use signet_core::pem::encode_certs;
use signet_proto::node::NewDownstreamX509caRequest;
use signet_tests::checks::{now_unix, openssl_verify, validity};
use signet_tests::netns::Host;
use signet_tests::node::node_client;
use signet_tests::{my_uid_selector, wait, AgentOptions, TestAgent, TestServer};
use spiffe::WorkloadApiClient;

const PATIENCE: Duration = Duration::from_secs(30);
/// The edge's CA lifetime: short, so the test sees it run out for real.
const EDGE_CA_TTL: &str = "15s";

/// A bundle as a set: its order says nothing.
fn sorted(mut certs: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    certs.sort();
    certs
}

fn der_chain(svid: &spiffe::X509Svid) -> Vec<Vec<u8>> {
    svid.cert_chain()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect()
}

/// The SVID (chain, PKCS#8 key) the upstream agent serves the test process
/// for `id`, once it does.
async fn svid_for(agent: &TestAgent, id: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    wait::until("the downstream SVID", PATIENCE, || async {
        let ctx = client.fetch_x509_context().await.ok()?;
        let svid = ctx
            .svids()
            .iter()
            .find(|s| s.spiffe_id().to_string() == id)?;
        Some((der_chain(svid), svid.private_key().as_bytes().to_vec()))
    })
    .await
}

fn ca_csr() -> (Vec<u8>, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    (csr.der().to_vec(), key)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_api_signs_a_ca_only_for_the_svid_of_a_downstream_entry() {
    let upstream = TestServer::start().await;
    let agent = TestAgent::start(&upstream).await;
    let edge_id = upstream.id("/site/edge-1");
    let plain_id = upstream.id("/site/not-downstream");
    upstream.create_entry(
        &edge_id,
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &["--downstream"],
    );
    let plain_entry =
        upstream.create_entry(&plain_id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    let shown = upstream.cli_ok(&["entry", "show", "--spiffe-id", &edge_id]);
    assert!(shown.contains("Downstream"), "{shown}");

    let (chain, key) = svid_for(&agent, &edge_id).await;
    let mut client = node_client(&upstream.addr, &chain, &key).await;
    let (csr, ca_key) = ca_csr();
    let signed = client
        .new_downstream_x509ca(NewDownstreamX509caRequest { csr, ttl: 600 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(signed.ca_chain.len(), 1);
    assert_eq!(
        sorted(signed.x509_authorities),
        sorted(upstream.bundle_der())
    );
    let ca = &signed.ca_chain[0];
    signet_core::x509::public_key_matches_leaf(ca, rcgen::PublicKeyData::der_bytes(&ca_key))
        .unwrap();
    let (_, not_after) = validity(ca);
    assert!(not_after <= now_unix() + 600, "the asked TTL caps it");
    let audit = upstream.audit(&["show", "--kind", "downstream_ca"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains(&edge_id), "{audit}");

    let bad = client
        .new_downstream_x509ca(NewDownstreamX509caRequest {
            csr: b"not a CSR".to_vec(),
            ttl: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");

    // The same agent's other identity, and the agent itself: not downstream.
    let (chain, key) = svid_for(&agent, &plain_id).await;
    let mut plain = node_client(&upstream.addr, &chain, &key).await;
    let (csr, _) = ca_csr();
    let refused = plain
        .new_downstream_x509ca(NewDownstreamX509caRequest {
            csr: csr.clone(),
            ttl: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("downstream"), "{refused:?}");
    // Marked downstream afterwards, the same SVID is accepted.
    let updated = upstream.cli_ok(&[
        "entry",
        "update",
        "--id",
        plain_entry.trim(),
        "--downstream",
        "true",
    ]);
    assert!(updated.contains("Downstream"), "{updated}");
    plain
        .new_downstream_x509ca(NewDownstreamX509caRequest {
            csr: csr.clone(),
            ttl: 0,
        })
        .await
        .unwrap();
    let (chain, key) = agent.identity();
    let mut as_agent = node_client(&upstream.addr, &chain, &key).await;
    let refused = as_agent
        .new_downstream_x509ca(NewDownstreamX509caRequest { csr, ttl: 0 })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
}

/// The edge server's config: its upstream, the root file, the agent socket.
fn edge_config(dir: &Path, upstream: &TestServer, agent: &TestAgent, id: &str) -> String {
    let root = dir.join("upstream-root.pem");
    let roots = upstream.bundle_der();
    std::fs::write(&root, encode_certs(roots.iter().map(Vec::as_slice))).unwrap();
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream_authority.signet]\nserver_address = \"{}\"\ntrust_bundle_path = \"{}\"\n\
             workload_api_socket = \"{}\"\ntimeout = \"2s\"\nspiffe_id = \"{id}\"\n",
            upstream.addr,
            root.display(),
            agent.socket_path.display()
        ),
    )
    .unwrap();
    config.display().to_string()
}

/// `x509 mint` on `server`: the chain (DER), or the CLI's error.
fn mint(server: &TestServer, id: &str) -> Result<Vec<Vec<u8>>, String> {
    let out = server.cli(&["x509", "mint", "--spiffe-id", id, "--output", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pem = v["svid_pem"].as_str().unwrap();
    Ok(signet_core::pem::decode_certs(pem.as_bytes()).unwrap())
}

/// The latest notAfter of the edge's X.509 authorities (Unix seconds).
fn last_ca_expiry(server: &TestServer) -> i64 {
    let out = server.cli_ok(&["authority", "x509", "show", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["not_after"].as_i64())
        .max()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edge_site_chains_to_the_upstream_root_and_issues_with_its_uplink_cut_until_its_ca_expires(
) {
    let site = Host::start();
    let dir = tempfile::tempdir().unwrap();
    // The organisation's server, and its agent on the edge host.
    let upstream = TestServer::start_listening_on(&site.host_ip, &[]).await;
    let up_agent = TestAgent::spawn_opts(
        &upstream,
        Some(&upstream.join_token()),
        AgentOptions {
            prefix: site.prefix(),
            ..AgentOptions::default()
        },
    );
    let mut up_agent = up_agent;
    up_agent.wait_healthy().await;
    let edge_id = upstream.id("/site/edge-1");
    upstream.create_entry(
        &edge_id,
        &up_agent.spiffe_id,
        &[&my_uid_selector()],
        &["--downstream"],
    );
    svid_for(&up_agent, &edge_id).await;

    // The edge server, on the edge host, signed upstream; its agent there.
    let config = edge_config(dir.path(), &upstream, &up_agent, &edge_id);
    let edge = TestServer::start_inside(
        &site.prefix(),
        &["--config", &config, "--ca-ttl", EDGE_CA_TTL],
    )
    .await;
    let roots = upstream.bundle_der();
    assert_eq!(
        sorted(edge.bundle_der()),
        sorted(roots.clone()),
        "the edge bundle is the upstream's roots"
    );
    let mut edge_agent = TestAgent::spawn_opts(
        &edge,
        Some(&edge.join_token()),
        AgentOptions {
            prefix: site.prefix(),
            ..AgentOptions::default()
        },
    );
    edge_agent.wait_healthy().await;
    let sensor = edge.id("/edge/sensor");
    edge.create_entry(&sensor, &edge_agent.spiffe_id, &[&my_uid_selector()], &[]);
    let client = WorkloadApiClient::connect_to(edge_agent.endpoint())
        .await
        .unwrap();
    let svid = wait::until("the edge workload's SVID", PATIENCE, || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;
    let chain = der_chain(&svid);
    assert!(chain.len() >= 2, "leaf and the edge CA");
    let verified = openssl_verify(dir.path(), &roots, &chain).unwrap();
    assert!(verified.contains("OK"), "{verified}");

    // The upstream prepares a new root: the edge bundle follows at once
    // (through the upstream's agent), before the upstream signs with it.
    upstream.cli_ok(&["authority", "x509", "prepare"]);
    let grown = sorted(upstream.bundle_der());
    assert_eq!(grown.len(), 2);
    wait::until(
        "the edge bundle following the upstream's roots",
        PATIENCE,
        || async { (sorted(edge.bundle_der()) == grown).then_some(()) },
    )
    .await;

    // Uplink down: the edge goes on issuing from the CA it holds.
    site.cut();
    let minted = mint(&edge, &edge.id("/edge/offline")).unwrap();
    openssl_verify(dir.path(), &roots, &minted).unwrap();
    // Its health report says the upstream is out of reach, and until when
    // it signs.
    let warned = wait::until("the edge's health warning", PATIENCE, || async {
        let out = edge.cli(&["healthcheck"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success() && err.contains("signs until")).then_some(err)
    })
    .await;
    assert!(warned.contains("upstream authority"), "{warned}");
    let expiry = last_ca_expiry(&edge);
    assert!(expiry > now_unix(), "the edge CA still signs");
    // Until the last CA it holds runs out (no new one: upstream unreachable).
    let wait_s = u64::try_from(expiry - now_unix() + 1).unwrap_or(0);
    assert!(wait_s <= 20, "an edge CA lives {EDGE_CA_TTL} at most");
    tokio::time::sleep(Duration::from_secs(wait_s)).await;
    let refused = wait::until("the edge refusing to issue", PATIENCE, || async {
        mint(&edge, &edge.id("/edge/late")).err()
    })
    .await;
    assert!(refused.contains("has expired"), "{refused}");
    let log = edge.log_text();
    assert!(log.contains("upstream authority"), "{log}");
}
