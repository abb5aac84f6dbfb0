//! What the README shows a user doing with the two CLIs, each run as the
//! real binary against real daemons: `api watch`, `api fetch jwt-bundle`,
//! per-entry `--jwt-svid-ttl`, every `authority jwt` verb (a revoked key's
//! tokens refused), `jwt mint` and `x509 mint`, eviction and re-attestation
//! with a new token, and what `healthcheck` reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use signet_core::{Clock, SystemClock};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use signet_tests::bins::bins;
use signet_tests::peer::KillOnDrop;
use signet_tests::{my_uid_selector, start_pair, wait, AgentOptions, TestAgent, TestServer};

const PATIENCE: Duration = Duration::from_secs(30);

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The claims and header of a compact JWS, unverified.
fn decode(token: &str) -> (serde_json::Value, serde_json::Value) {
    let mut parts = token.split('.');
    let mut next = || {
        let bytes = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let header = next();
    (header, next())
}

/// `api fetch jwt --audience A --output json` until served; the token.
async fn fetch_jwt(agent: &TestAgent, audience: &str) -> String {
    wait::until("a JWT-SVID", PATIENCE, || async {
        let out = agent.cli(&[
            "api",
            "fetch",
            "jwt",
            "--audience",
            audience,
            "--output",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["svids"][0]["svid"].as_str().map(str::to_owned)
    })
    .await
}

/// The kids in `api fetch jwt-bundle --output json` for our trust domain.
fn bundle_kids(agent: &TestAgent) -> Vec<String> {
    let out = agent.cli(&["api", "fetch", "jwt-bundle", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["bundles"]["spiffe://example.org"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn api_watch_prints_each_rotation_and_ends_when_the_identity_goes() {
    let (server, agent) = start_pair(&[]).await;
    let id = server.id("/watched");
    let entry = server.create_entry(
        &id,
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &["--x509-svid-ttl", "4s"],
    );
    wait::until("the SVID issued", PATIENCE, || async {
        agent
            .cli(&["api", "fetch", "x509"])
            .status
            .success()
            .then_some(())
    })
    .await;
    let child = Command::new(&bins().agent)
        .args(["api", "watch", "--socket-path"])
        .arg(&agent.socket_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watch = KillOnDrop(child);
    let lines = BufReader::new(watch.0.stdout.take().unwrap()).lines();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Two updates (the first, then the renewal at about half its 4 s life),
    // each naming the SPIFFE ID and a later expiry.
    let mut expiries = Vec::new();
    while expiries.len() < 2 {
        let line = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let Some(rest) = line.strip_prefix(&format!("SPIFFE ID: {id}\tValid Until: ")) {
            let unix: i64 = rest
                .rsplit_once('(')
                .unwrap()
                .1
                .trim_end_matches(')')
                .parse()
                .unwrap();
            expiries.push(unix);
        } else {
            assert!(
                line.starts_with("Update #") && line.ends_with(": 1 svid"),
                "{line}"
            );
        }
    }
    assert!(expiries[1] > expiries[0], "{expiries:?}");
    // The entry goes: the stream ends and watch says why.
    server.delete_entry(&entry);
    let status = tokio::task::spawn_blocking(move || {
        let status = watch.0.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut watch.0.stderr.take().unwrap(), &mut err).unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert!(!status.0.success());
    assert!(status.1.contains("no identity issued"), "{}", status.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_svid_ttl_per_entry_and_every_jwt_authority_verb() {
    let (server, agent) = start_pair(&[]).await;
    server.create_entry(
        &server.id("/jwt"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &["--jwt-svid-ttl", "90s"],
    );
    let token = fetch_jwt(&agent, "billing").await;
    let (header, claims) = decode(&token);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        90
    );
    let first_kid = header["kid"].as_str().unwrap().to_owned();
    assert_eq!(bundle_kids(&agent), vec![first_kid.clone()]);
    assert_eq!(
        server.authority_in_state("jwt", "active").as_deref(),
        Some(first_kid.as_str())
    );

    // prepare: a second key is published before it signs anything.
    let prepared = server.cli_ok(&["authority", "jwt", "prepare"]);
    assert_eq!(
        server.authority_in_state("jwt", "prepared"),
        Some(prepared.clone())
    );
    wait::until(
        "the prepared key in the agent's bundle",
        PATIENCE,
        || async { bundle_kids(&agent).contains(&prepared).then_some(()) },
    )
    .await;
    // activate: it signs from now on; the old one stays to verify.
    server.cli_ok(&["authority", "jwt", "activate"]);
    assert_eq!(
        server.authority_in_state("jwt", "active"),
        Some(prepared.clone())
    );
    assert_eq!(
        server.authority_in_state("jwt", "old"),
        Some(first_kid.clone())
    );
    // taint: tokens of the old key are dropped and minted again with the new.
    server.cli_ok(&["authority", "jwt", "taint", "--id", &first_kid]);
    let again = wait::until("a token from the new key", PATIENCE, || async {
        let t = fetch_jwt(&agent, "billing").await;
        (decode(&t).0["kid"] == prepared.as_str()).then_some(t)
    })
    .await;
    assert!(agent
        .cli(&[
            "api",
            "validate",
            "jwt",
            "--audience",
            "billing",
            "--svid",
            &again
        ])
        .status
        .success());
    // revoke: the old key leaves every bundle, and its tokens are refused.
    server.cli_ok(&["authority", "jwt", "revoke", "--id", &first_kid]);
    wait::until(
        "the revoked key gone from the agent's bundle",
        PATIENCE,
        || async { (!bundle_kids(&agent).contains(&first_kid)).then_some(()) },
    )
    .await;
    let out = agent.cli(&[
        "api",
        "validate",
        "jwt",
        "--audience",
        "billing",
        "--svid",
        &token,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("key id {first_kid:?} not found")),
        "{}",
        stderr(&out)
    );
    let shown = server.authorities("jwt");
    assert!(shown.iter().all(|(id, _, _)| *id != first_kid), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_mint_and_x509_mint_give_credentials_that_validate() {
    let (server, agent) = start_pair(&[]).await;
    // A JWT-SVID outside any agent, validated by an agent of the domain.
    let token = server.cli_ok(&[
        "jwt",
        "mint",
        "--spiffe-id",
        &server.id("/ci"),
        "--audience",
        "deploy",
        "--ttl",
        "10m",
    ]);
    let (_, claims) = decode(&token);
    assert_eq!(claims["sub"], server.id("/ci"));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    let out = agent.cli(&[
        "api",
        "validate",
        "jwt",
        "--audience",
        "deploy",
        "--svid",
        &token,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("SPIFFE ID : {}", server.id("/ci"))));
    // An X.509-SVID written to a directory: key 0600, the chain valid.
    let dir = tempfile::tempdir().unwrap();
    let out = server.cli_ok(&[
        "x509",
        "mint",
        "--spiffe-id",
        &server.id("/admin"),
        "--ttl",
        "1h",
        "--dns",
        "admin.internal",
        "--write",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.contains("Private key written to"), "{out}");
    let mode = |f: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("key.pem"), 0o600);
    let chain =
        signet_core::pem::decode_certs(&std::fs::read(dir.path().join("svid.pem")).unwrap())
            .unwrap();
    let bundle =
        signet_core::pem::decode_certs(&std::fs::read(dir.path().join("bundle.pem")).unwrap())
            .unwrap();
    let id = signet_core::x509::validate_x509_svid(&chain, &bundle, SystemClock.now()).unwrap();
    assert_eq!(id.to_string(), server.id("/admin"));
    let sans = signet_tests::checks::assert_svid_leaf_profile(&chain[0]);
    assert_eq!(sans, server.id("/admin"));
    let leaf = x509_parser::parse_x509_certificate(&chain[0]).unwrap().1;
    let dns: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        dns,
        vec!["admin.internal".to_string()],
        "--dns is in the leaf"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_evicted_agent_is_told_so_is_refused_by_the_node_api_and_comes_back_with_a_new_token() {
    let (server, mut agent) = start_pair(&[]).await;
    server.create_entry(
        &server.id("/w"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let (chain, key) = agent.identity();
    server.cli_ok(&["agent", "evict", "--spiffe-id", &agent.spiffe_id]);
    let report = wait::until("the agent to report its eviction", PATIENCE, || async {
        let out = agent.cli(&["healthcheck"]);
        let err = stderr(&out);
        (!out.status.success() && err.contains("agent evicted by the server")).then_some(err)
    })
    .await;
    assert!(
        report.contains("restart the agent with --join-token TOKEN"),
        "{report}"
    );
    // Its old certificate gets nothing from the Node API.
    let mut node = signet_tests::node::node_client(&server.addr, &chain, &key).await;
    let err = node
        .sync(signet_proto::node::SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message()
            .contains("is not attested (unknown or evicted); attest again"),
        "{}",
        err.message()
    );
    // A new token brings the host back as a new agent.
    agent.kill9();
    let mut back = TestAgent::start(&server).await;
    back.wait_healthy().await;
    server.create_entry(
        &server.id("/w2"),
        &back.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let out = wait::until("an SVID again", PATIENCE, || async {
        let out = back.cli(&["api", "fetch", "x509"]);
        out.status.success().then_some(stdout(&out))
    })
    .await;
    assert!(out.contains(&server.id("/w2")), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_reports_an_expired_agent_svid_and_clock_skew() {
    // The agent's own SVID lives 4 s; the server goes away for good.
    let mut server = TestServer::start_with(&["--default-x509-svid-ttl", "4s"]).await;
    let agent = TestAgent::start(&server).await;
    server.stop();
    let report = wait::until("the expired agent SVID reported", PATIENCE, || async {
        let out = agent.cli(&["healthcheck"]);
        let err = stderr(&out);
        (!out.status.success() && err.contains("expired before it could be renewed")).then_some(err)
    })
    .await;
    assert!(report.contains(&agent.spiffe_id), "{report}");

    // An agent whose clock runs two minutes ahead of the server's.
    let server = TestServer::start().await;
    let token = server.join_token();
    let skewed = TestAgent::spawn_opts(
        &server,
        Some(&token),
        AgentOptions {
            env: faketime_env("+120s"),
            ..AgentOptions::default()
        },
    );
    let report = wait::until("the clock skew reported", PATIENCE, || async {
        let out = skewed.cli(&["healthcheck"]);
        let err = stderr(&out);
        err.contains("behind the agent's (max_clock_skew 30.000s): check NTP on both hosts")
            .then_some(err)
    })
    .await;
    assert!(report.contains("the server's clock is 1"), "{report}");
}

/// libfaketime preloaded into the agent itself (the `faketime` wrapper forks,
/// and killing the wrapper would leave the agent running).
fn faketime_env(offset: &str) -> Vec<(String, String)> {
    let lib = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|arch| arch.path().join("faketime/libfaketime.so.1"))
        .find(|lib| lib.exists())
        .expect("libfaketime is missing: apt-get install faketime");
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME".into(), offset.into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}
