//! go-spiffe (v2, the reference SPIFFE library for Go), a third independent
//! client, uses Signet's agent unmodified: X509Source and JWTSource, local
//! validation against the bundles it fetched, mTLS between two go-spiffe
//! workloads, rotation seen by the source, ValidateJWTSVID. Go is a
//! prerequisite (as for the SPIRE tests): without it these tests fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use signet_tests::checks::now_unix;
use signet_tests::go_clients::GoCheck;
use signet_tests::{my_uid_selector, start_pair, wait, TestAgent};

/// How long a line the test is waiting for may take.
const LINE: Duration = Duration::from_secs(15);

/// Waits until the agent serves the caller exactly `ids` (in any order), so
/// that go-spiffe starts from a settled state instead of its retry backoff.
async fn wait_for_svids(agent: &TestAgent, ids: &[&str]) {
    let mut want: Vec<&str> = ids.to_vec();
    want.sort_unstable();
    wait::until(
        "the agent serving the test's SVIDs",
        Duration::from_secs(20),
        || async {
            let out = agent.cli(&["api", "fetch", "x509", "--output", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let mut got: Vec<String> = v["svids"]
                .as_array()?
                .iter()
                .filter_map(|s| s["spiffe_id"].as_str().map(str::to_owned))
                .collect();
            got.sort_unstable();
            (got == want).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn go_spiffe_x509_source_gets_an_svid_that_verifies_against_the_bundle() {
    let (server, agent) = start_pair(&[]).await;
    let id = server.id("/workload/go");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    wait_for_svids(&agent, &[&id]).await;

    let run = GoCheck::new(&agent).run("x509", &[]).await;
    let v = run.ok();
    assert_eq!(v["spiffe_id"], id);
    assert_eq!(v["verified_id"], id, "x509svid.Verify accepts it");
    assert_eq!(v["chain_len"], 1);
    assert_eq!(v["bundle_authorities"], 1);
    assert_eq!(
        v["issuer_authority_id"].as_str(),
        server.authority_in_state("x509", "active").as_deref(),
        "signed by the server's active authority"
    );
    assert!(v["not_after"].as_i64().unwrap() > now_unix());
}

#[tokio::test]
async fn go_spiffe_jwt_source_validates_locally_and_through_the_agent() {
    let (server, agent) = start_pair(&[]).await;
    let id = server.id("/workload/go-jwt");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    wait_for_svids(&agent, &[&id]).await;
    let go = GoCheck::new(&agent);

    let run = go
        .run("jwt", &["--audience", "svc-a", "--audience", "svc-b"])
        .await;
    let v = run.ok();
    assert_eq!(v["spiffe_id"], id);
    assert_eq!(v["audience"], json!(["svc-a", "svc-b"]));
    assert!(v["expiry"].as_i64().unwrap() > now_unix());
    assert_eq!(v["jwt_authorities"], 1);
    assert_eq!(v["validated_id"], id, "jwtsvid.ParseAndValidate accepts it");
    assert_eq!(v["validated_audience"], json!(["svc-a", "svc-b"]));
    let wrong = v["wrong_audience_error"].as_str().unwrap();
    assert!(
        wrong.contains("audience"),
        "refused locally for another audience, said {wrong:?}"
    );
    let token = v["token"].as_str().unwrap().to_owned();

    let run = go
        .run("validate", &["--audience", "svc-b", "--token", &token])
        .await;
    let v = run.ok();
    assert_eq!(v["spiffe_id"], id);
    assert_eq!(v["sub"], id);
    assert_eq!(v["audience"], json!(["svc-a", "svc-b"]));

    let run = go
        .run("validate", &["--audience", "svc-c", "--token", &token])
        .await;
    let err = run.failed();
    assert!(
        err.contains("InvalidArgument"),
        "the agent refuses a token for another audience: {err}"
    );
}

#[tokio::test]
async fn go_spiffe_workloads_talk_mtls_and_refuse_the_wrong_peer_id() {
    let (server, agent) = start_pair(&[]).await;
    let frontend = server.id("/go/frontend");
    let backend = server.id("/go/backend");
    let stranger = server.id("/go/stranger");
    // Both identities go to the test's uid; each side picks its own.
    for id in [&frontend, &backend] {
        server.create_entry(id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    }
    wait_for_svids(&agent, &[&frontend, &backend]).await;
    let go = GoCheck::new(&agent);

    let mut serve = go.spawn(
        "mtls-serve",
        &[
            "--id",
            &backend,
            "--authorize",
            &frontend,
            "--connections",
            "3",
        ],
    );
    let listening = serve.next_line(LINE).await;
    assert_eq!(listening["event"], "listening");
    assert_eq!(listening["spiffe_id"], backend);
    let addr = listening["addr"].as_str().unwrap().to_owned();

    // The authorized pair.
    let run = go
        .run(
            "mtls-dial",
            &["--id", &frontend, "--authorize", &backend, "--addr", &addr],
        )
        .await;
    let v = run.ok();
    assert_eq!(v["spiffe_id"], frontend);
    assert_eq!(v["peer_id"], backend);
    assert_eq!(v["reply"], format!("pong to {frontend}"));
    let accepted = serve.next_line(LINE).await;
    assert_eq!(accepted["event"], "accepted", "{accepted}");
    assert_eq!(accepted["peer_id"], frontend);
    assert_eq!(accepted["message"], "ping");

    // The client expects someone else: it refuses the server.
    let run = go
        .run(
            "mtls-dial",
            &["--id", &frontend, "--authorize", &stranger, "--addr", &addr],
        )
        .await;
    let err = run.failed();
    assert!(
        err.contains(&format!("unexpected ID \"{backend}\"")),
        "the client names the server's wrong ID: {err}"
    );
    let refused = serve.next_line(LINE).await;
    assert_eq!(refused["event"], "refused", "{refused}");

    // The server allows only the frontend: it refuses the backend's SVID.
    let run = go
        .run(
            "mtls-dial",
            &["--id", &backend, "--authorize", &backend, "--addr", &addr],
        )
        .await;
    let err = run.failed();
    assert!(err.contains("tls"), "a TLS alert from the server: {err}");
    let refused = serve.next_line(LINE).await;
    assert_eq!(refused["event"], "refused", "{refused}");
    let why = refused["error"].as_str().unwrap();
    assert!(
        why.contains(&format!("unexpected ID \"{backend}\"")),
        "the server names the client's wrong ID: {why}"
    );

    let done = serve.next_line(LINE).await;
    assert_eq!(
        done,
        json!({"event": "done", "accepted": 1, "refused": 2}),
        "one connection accepted, two refused"
    );
    serve.wait_success().await;
}

#[tokio::test]
async fn go_spiffe_x509_source_sees_the_svid_rotate_with_the_ca() {
    let (server, agent) = start_pair(&[]).await;
    let id = server.id("/workload/go-rotating");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    wait_for_svids(&agent, &[&id]).await;
    let old_ca = server.authority_in_state("x509", "active").unwrap();

    let mut watch = GoCheck::new(&agent).spawn("watch", &["--until-rotated", "--timeout", "25s"]);
    let initial = watch.next_line(LINE).await;
    assert_eq!(initial["event"], "initial");
    assert_eq!(initial["spiffe_id"], id);
    assert_eq!(initial["bundle_authorities"], 1);
    assert_eq!(initial["issuer_authority_id"], old_ca);
    let first_serial = initial["serial"].as_str().unwrap().to_owned();

    // A prepared CA reaches the bundle first; the SVID stays as it is.
    let new_ca = server.cli_ok(&["authority", "x509", "prepare"]);
    let update = watch.next_line(LINE).await;
    assert_eq!(update["event"], "update");
    assert_eq!(update["n"], 1);
    assert_eq!(update["bundle_authorities"], 2);
    assert_eq!(update["serial"], first_serial.as_str());

    // Activated, and the old CA tainted: the agent re-issues the SVID now
    // (its TTL is an hour), from the new CA, and the source swaps it in.
    server.cli_ok(&["authority", "x509", "activate"]);
    server.cli_ok(&["authority", "x509", "taint", "--id", &old_ca]);
    let update = watch.next_line(LINE).await;
    assert_eq!(update["event"], "update");
    assert_eq!(update["n"], 2);
    assert_eq!(update["spiffe_id"], id);
    assert_ne!(update["serial"], first_serial.as_str(), "a new certificate");
    assert_eq!(update["issuer_authority_id"], new_ca);
    assert_eq!(update["verified_id"], id, "x509svid.Verify accepts it");
    assert_eq!(
        update["bundle_authorities"], 2,
        "the tainted CA stays trusted until revoked"
    );

    let done = watch.next_line(LINE).await;
    assert_eq!(
        done,
        json!({"event": "done", "updates": 2, "rotated": true})
    );
    watch.wait_success().await;
}
