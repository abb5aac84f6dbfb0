//! The Node API under attack: a stolen agent certificate revoked as
//! compromised, thousands of idle TCP and TLS connections from one address
//! while agents attest from another, join tokens guessed and signing
//! batches inflated. Figures print as `FIGURE ...` lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use signet_proto::node::{BatchSignX509SvidRequest, RenewAgentRequest, SyncRequest};
use signet_tests::http::{get, metric_value};
use signet_tests::node::{attest, node_client, sign_params};
use signet_tests::peer::{spawn_peer, status_until};
use signet_tests::{checks, my_uid_selector, start_pair, wait, TestAgent, TestServer};
use tonic::Code;

const PATIENCE: Duration = Duration::from_secs(30);

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_agent_certificate_is_refused_everywhere_and_renews_nothing() {
    let (server, agent) = start_pair(&[]).await;
    let entry = server.create_entry(
        &server.id("/w"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let (chain, key) = agent.identity();
    let serial = checks::serial_hex(&chain[0]);
    // The thief's copy works before the revocation.
    let mut stolen = node_client(&server.addr, &chain, &key).await;
    let mut sync = stolen
        .sync(SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(sync.message().await.unwrap().is_some());

    server.cli_ok(&[
        "revoke",
        "x509",
        "--serial",
        &serial,
        "--reason",
        "host compromised",
    ]);
    let refused = |status: tonic::Status| {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status
                .message()
                .contains(&format!("presented a revoked SVID (serial {serial})")),
            "{status:?}"
        );
    };
    // The stream it had open ends at once.
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match sync.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the open Sync stream ended");
    refused(ended);
    let mut stolen = node_client(&server.addr, &chain, &key).await;
    refused(
        stolen
            .sync(SyncRequest {
                since_revision: 0,
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    let (params, _) = sign_params(&entry, &server.id("/w"));
    refused(
        stolen
            .batch_sign_x509_svid(BatchSignX509SvidRequest {
                params: vec![params],
            })
            .await
            .unwrap_err(),
    );
    let csr_key = rcgen::KeyPair::generate().unwrap();
    let id = signet_core::SpiffeId::parse(&agent.spiffe_id).unwrap();
    let csr = signet_core::x509::build_csr(&csr_key, &id).unwrap();
    refused(
        stolen
            .renew_agent(RenewAgentRequest { csr })
            .await
            .unwrap_err(),
    );

    // The agent itself is cut off like an evicted one and says why.
    wait::until("the agent to report its revoked SVID", PATIENCE, || async {
        let out = agent.cli(&["healthcheck"]);
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        (!out.status.success() && text.contains("revoked SVID")).then_some(())
    })
    .await;
}

/// How many descriptors `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread")]
async fn five_thousand_idle_connections_from_one_address_leave_attestation_to_others() {
    // nofile 1024, where 1,003 idle connections once stopped all attestation.
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("server.toml");
    std::fs::write(
        &config,
        "[node_api]\ntls_handshake_timeout = \"2s\"\nfirst_request_timeout = \"2s\"\n",
    )
    .unwrap();
    let server = TestServer::start_under(
        &["prlimit", "--nofile=1024:1024", "--"],
        &["--config", s(&config)],
    )
    .await;
    let pid = server.proc.as_ref().and_then(|p| p.pid()).unwrap();
    let idle_fds = open_fds(pid);
    let reports = tempfile::tempdir().unwrap();
    let flood = |kind: &str, extra: &[&str]| {
        let status = reports.path().join(format!("{kind}.json"));
        let mut args = vec![
            "tcp-flood",
            "--addr",
            &server.addr,
            "--source",
            "127.0.0.2",
            "--count",
            "2500",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--status", s(&status)]);
        (spawn_peer(0, &args), status)
    };
    // 2,500 that finish a TLS handshake (no client certificate) and idle,
    // then 2,500 that never start one.
    let (_tls, tls_status) = flood("tls", &["--tls"]);
    status_until("the TLS flood", &tls_status, PATIENCE, |v| {
        (v["done"] == true).then_some(())
    })
    .await;
    let (_tcp, tcp_status) = flood("tcp", &[]);
    let mut peak_fds = open_fds(pid);
    // Agents attest from another address meanwhile.
    let mut times = Vec::new();
    for _ in 0..20 {
        let token = server.join_token();
        let started = Instant::now();
        attest(&server, &token)
            .await
            .expect("a legitimate Attest failed");
        times.push(started.elapsed());
        peak_fds = peak_fds.max(open_fds(pid));
    }
    status_until("the TCP flood", &tcp_status, PATIENCE, |v| {
        (v["done"] == true).then_some(())
    })
    .await;
    // What the server took of them is closed once idle past its timeouts.
    wait::until(
        "the server to let the idle connections go",
        PATIENCE,
        || async { (open_fds(pid) <= idle_fds + 8).then_some(()) },
    )
    .await;
    let read = |path: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (tls, tcp) = (read(&tls_status), read(&tcp_status));
    times.sort();
    eprintln!(
        "FIGURE node_api_flood: server nofile 1024; 5000 connections from 127.0.0.2: TLS {tls}, TCP {tcp}; server descriptors {idle_fds} idle, {peak_fds} at most; 20 Attests from 127.0.0.1 all succeeded, p50 {:?} max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    // (1024 - 256 reserved) connections in all, a quarter for one address:
    // the flood never held more than 192 at once (and a few in the accept
    // queue); the rest were refused at accept.
    assert!(peak_fds < idle_fds + 192 + 64, "{peak_fds} descriptors");
    let taken =
        tls["closed_by_server"].as_u64().unwrap() + tcp["closed_by_server"].as_u64().unwrap();
    let refused = tls["refused"].as_u64().unwrap() + tcp["refused"].as_u64().unwrap();
    // How many the server took in all depends on how many slots its 2 s
    // timeouts freed while the flood went on (seen: 384 to 428), not on the
    // cap: most of the 5000 must have been refused (without the cap, none).
    assert!(taken >= 1 && refused > 2500, "{tls} {tcp}");
    let log = server.log_text();
    let refusals = log.matches("refused a Node API connection").count();
    assert!((1..=3).contains(&refusals), "{refusals} refusal log lines");
}

async fn signatures(telemetry: &str) -> f64 {
    let (code, body) = get(telemetry, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    metric_value(&body, "signet_server_ca_x509_signatures_total").expect("the signature counter")
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_signed_for_a_guessed_token_or_an_oversized_batch() {
    let server = TestServer::start_with(&["--telemetry-bind", "127.0.0.1:0"]).await;
    let telemetry = server.telemetry_addr();
    let agent = TestAgent::start(&server).await;
    let before = signatures(&telemetry).await;
    for _ in 0..50 {
        let guess = uuid_like();
        let err = attest(&server, &guess).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert_eq!(
            err.message(),
            "join token does not exist or has already been used"
        );
    }
    assert_eq!(
        signatures(&telemetry).await,
        before,
        "a guessed token cost a signature"
    );
    attest(&server, &server.join_token()).await.unwrap();
    assert_eq!(signatures(&telemetry).await, before + 1.0);

    let entry = server.create_entry(
        &server.id("/w"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    // The agent issues its own SVID for it first; then nothing else signs.
    let socket = agent.socket_path.clone();
    wait::until("the agent's SVID for the entry", PATIENCE, || {
        let socket = socket.clone();
        async move {
            let mut c = signet_tests::workload::raw_client(&socket).await;
            let r = c
                .fetch_x509svid(signet_tests::workload::with_header(
                    signet_proto::workload::X509svidRequest {},
                ))
                .await
                .ok()?;
            r.into_inner().message().await.ok()?.map(|_| ())
        }
    })
    .await;
    let (chain, key) = agent.identity();
    let mut client = node_client(&server.addr, &chain, &key).await;
    let params: Vec<_> = (0..1025)
        .map(|_| sign_params(&entry, &server.id("/w")).0)
        .collect();
    let before = signatures(&telemetry).await;
    let err = client
        .batch_sign_x509_svid(BatchSignX509SvidRequest { params })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "a batch of 1025 CSRs is larger than the 1024 one call may carry"
    );
    assert_eq!(signatures(&telemetry).await, before);
    // At the bound it is signed, each CSR on its own.
    let params: Vec<_> = (0..1024)
        .map(|_| sign_params(&entry, &server.id("/w")).0)
        .collect();
    let results = client
        .batch_sign_x509_svid(BatchSignX509SvidRequest { params })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 1024);
    assert!(results
        .iter()
        .all(|r| r.error_code == 0 && !r.svid_chain.is_empty()));
    assert_eq!(signatures(&telemetry).await, before + 1024.0);
}

/// A token-shaped guess (the real ones are UUIDv4).
fn uuid_like() -> String {
    let b: [u8; 16] = rand_bytes();
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0xfff,
        u16::from_be_bytes([b[8], b[9]]) & 0xfff,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]]),
    )
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    b
}
