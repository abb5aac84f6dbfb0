//! Two Signet trust domains on one machine, each a server and an agent,
//! federated over their bundle endpoints: their workloads verify each
//! other's X509-SVIDs and JWT-SVIDs, complete mTLS, follow each other's
//! rotations, and refuse a peer whose bundle they do not hold; a bad
//! bundle endpoint never takes away the bundle held.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tokio::time::Instant;

use futures::StreamExt;
use signet_core::{Clock, SystemClock};
use signet_tests::checks::authority_id;
use signet_tests::federation::{
    authorities, chain, context_with, refreshes, Domain, HttpsPeer, WebCa,
};
use signet_tests::spiffe_tls::{handshake, Side};
use signet_tests::wait;
use spiffe::{JwtSvid, TrustDomain};

async fn two_domains(hint: &str) -> (Domain, Domain) {
    let (a, b) = tokio::join!(
        Domain::start("a.test", hint, ""),
        Domain::start("b.test", hint, "")
    );
    a.federate_with(&b);
    b.federate_with(&a);
    (a, b)
}

#[tokio::test]
async fn workloads_of_two_federated_domains_authenticate_each_other() {
    let ((a, b), c) = tokio::join!(two_domains("1s"), Domain::start("c.test", "1s", ""));
    let (on_a, on_b, on_c) = tokio::join!(
        a.workload(&["b.test"]),
        b.workload(&["a.test"]),
        c.workload(&[])
    );
    let (ctx_a, ctx_b) = tokio::join!(context_with(&on_a, "b.test"), context_with(&on_b, "a.test"));
    let ctx_c = context_with(&on_c, "c.test").await;

    // Each holds the other's CAs, exactly as the other's server has them.
    assert_eq!(authorities(&ctx_a, "b.test"), b.server.bundle_der());
    assert_eq!(authorities(&ctx_b, "a.test"), a.server.bundle_der());
    assert!(
        authorities(&ctx_a, "c.test").is_empty(),
        "a never heard of c"
    );
    assert!(authorities(&ctx_c, "a.test").is_empty());

    // An X509-SVID of b.test verifies against the bundle a's workload got.
    let id = signet_core::x509::validate_x509_svid(
        &chain(&ctx_b),
        &authorities(&ctx_a, "b.test"),
        SystemClock.now(),
    )
    .unwrap();
    assert_eq!(id.to_string(), "spiffe://b.test/workload");

    // mTLS between the two, each judging the other from its own Workload API.
    let (side_a, side_b, side_c) = (
        Side::from_context(&ctx_a),
        Side::from_context(&ctx_b),
        Side::from_context(&ctx_c),
    );
    let (b_saw, a_saw) = handshake(&side_a, &side_b).await.unwrap();
    assert_eq!(b_saw, "spiffe://a.test/workload");
    assert_eq!(a_saw, "spiffe://b.test/workload");
    let (a_saw, b_saw) = handshake(&side_b, &side_a).await.unwrap();
    assert_eq!(
        (a_saw.as_str(), b_saw.as_str()),
        ("spiffe://b.test/workload", "spiffe://a.test/workload")
    );
    // c.test is no one's peer. Even a c.test workload that somehow holds
    // the others' bundles is refused by them, as client and as server.
    let mut side_c = side_c;
    side_c
        .bundles
        .insert("a.test".into(), authorities(&ctx_b, "a.test"));
    side_c
        .bundles
        .insert("b.test".into(), authorities(&ctx_a, "b.test"));
    let refused = handshake(&side_c, &side_b).await.unwrap_err();
    assert!(
        refused.contains("no bundle for trust domain c.test"),
        "{refused}"
    );
    let refused = handshake(&side_a, &side_c).await.unwrap_err();
    assert!(
        refused.contains("no bundle for trust domain c.test"),
        "{refused}"
    );

    // A JWT-SVID of a.test validates through b's agent, and against the JWT
    // bundles b's workload holds.
    let token = on_a.fetch_jwt_token(["b-service"], None).await.unwrap();
    let validated = on_b.validate_jwt_token("b-service", &token).await.unwrap();
    assert_eq!(
        validated.spiffe_id().to_string(),
        "spiffe://a.test/workload"
    );
    let jwt_bundles = on_b.fetch_jwt_bundles().await.unwrap();
    let local = JwtSvid::parse_and_validate(&token, &jwt_bundles, &["b-service"]).unwrap();
    assert_eq!(local.spiffe_id().to_string(), "spiffe://a.test/workload");
    // And the other way round.
    let token = on_b.fetch_jwt_token(["a-service"], None).await.unwrap();
    let validated = on_a.validate_jwt_token("a-service", &token).await.unwrap();
    assert_eq!(
        validated.spiffe_id().to_string(),
        "spiffe://b.test/workload"
    );

    // c.test's tokens are refused by an agent that holds no c.test bundle.
    let token = on_c.fetch_jwt_token(["b-service"], None).await.unwrap();
    let err = on_b
        .validate_jwt_token("b-service", &token)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("c.test"), "{err}");

    // What the admin sees: the relationship, its last fetch, the bundle held.
    let show: serde_json::Value = serde_json::from_str(&a.server.cli_ok(&[
        "federation",
        "show",
        "--trust-domain",
        "b.test",
        "--output",
        "json",
    ]))
    .unwrap();
    assert_eq!(show["profile"], "https_spiffe");
    assert_eq!(show["endpoint_spiffe_id"], "spiffe://b.test/signet/server");
    assert_eq!(show["last_error"], "");
    assert!(show["last_fetch_at"].as_i64().unwrap() > 0);
    assert_eq!(show["bundle"]["source"], "endpoint");
    assert!(refreshes(&a.server, "b.test", "ok").await >= 1.0);
}

#[tokio::test]
async fn a_workload_sees_only_the_domains_its_entry_federates_with() {
    let (a, b) = two_domains("1s").await;
    let on_a = a.workload(&[]).await;
    let ctx = wait::until("an X.509 context", Duration::from_secs(20), || async {
        on_a.fetch_x509_context().await.ok()
    })
    .await;
    // b's bundle is held by a's agent, but this entry does not federate.
    wait::until("a holds b's bundle", Duration::from_secs(20), || async {
        a.server
            .cli(&["bundle", "show", "--trust-domain", "b.test"])
            .status
            .success()
            .then_some(())
    })
    .await;
    assert!(authorities(&ctx, "b.test").is_empty());
    let on_b = b.workload(&["a.test"]).await;
    let token = on_b.fetch_jwt_token(["a-service"], None).await.unwrap();
    let err = on_a
        .validate_jwt_token("a-service", &token)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not one the caller's entries federate with"),
        "{err}"
    );

    // `entry update --federates-with` changes it, and the open stream hears.
    let mut stream = on_a.stream_x509_contexts().await.unwrap();
    stream.next().await.unwrap().unwrap();
    let entry = entry_id(&a, "spiffe://a.test/workload");
    a.server.cli_ok(&[
        "entry",
        "update",
        "--id",
        &entry,
        "--federates-with",
        "b.test",
    ]);
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ctx = stream.next().await.unwrap().unwrap();
            if !authorities(&ctx, "b.test").is_empty() {
                return ctx;
            }
        }
    })
    .await
    .expect("b's bundle on the open stream within 10 s");
    assert_eq!(authorities(&next, "b.test"), b.server.bundle_der());
    let validated = on_a.validate_jwt_token("a-service", &token).await.unwrap();
    assert_eq!(
        validated.spiffe_id().to_string(),
        "spiffe://b.test/workload"
    );
}

fn entry_id(domain: &Domain, spiffe_id: &str) -> String {
    let out = domain.server.cli_ok(&[
        "entry",
        "show",
        "--spiffe-id",
        spiffe_id,
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["entries"][0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_peer_s_ca_rotation_reaches_the_other_domain_s_open_streams() {
    let (a, b) = two_domains("1s").await;
    let (on_a, on_b) = tokio::join!(a.workload(&["b.test"]), b.workload(&["a.test"]));
    context_with(&on_a, "b.test").await;
    let mut stream = on_a.stream_x509_contexts().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let before = authorities(&first, "b.test");

    // b prepares a CA: it is published in b's bundle, then in a's workloads'.
    let published = Instant::now();
    let prepared = b.server.cli_ok(&["authority", "x509", "prepare"]);
    let rotated = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ctx = stream.next().await.unwrap().unwrap();
            let now = authorities(&ctx, "b.test");
            if now.iter().any(|ca| authority_id(ca) == prepared) {
                return ctx;
            }
        }
    })
    .await
    .expect("b's new CA on a's open stream within 10 s");
    eprintln!(
        "b's prepared CA reached a's workload in {} ms (refresh hint 1 s)",
        published.elapsed().as_millis()
    );
    assert!(before.iter().all(|ca| authority_id(ca) != prepared));
    assert!(authorities(&rotated, "b.test").len() > before.len());

    // b activates it and taints the old one: b's workload's SVID is signed
    // anew by it, and a's workload verifies that with what it holds.
    let old = b.server.authority_in_state("x509", "active").unwrap();
    b.server.cli_ok(&["authority", "x509", "activate"]);
    b.server
        .cli_ok(&["authority", "x509", "taint", "--id", &old]);
    let ctx_b = wait::until(
        "b's SVID from the new CA",
        Duration::from_secs(20),
        || async {
            let ctx = on_b.fetch_x509_context().await.ok()?;
            let chain = chain(&ctx);
            let cas = b.server.bundle_der();
            let issuer = signet_tests::checks::issuer_index(&chain, &cas)?;
            (authority_id(&cas[issuer]) == prepared).then_some(ctx)
        },
    )
    .await;
    let ctx_a = on_a.fetch_x509_context().await.unwrap();
    let id = signet_core::x509::validate_x509_svid(
        &chain(&ctx_b),
        &authorities(&ctx_a, "b.test"),
        SystemClock.now(),
    )
    .unwrap();
    assert_eq!(id.to_string(), "spiffe://b.test/workload");
    handshake(&Side::from_context(&ctx_a), &Side::from_context(&ctx_b))
        .await
        .unwrap();

    // b revokes the old CA: it leaves a's workloads' bundles too.
    b.server
        .cli_ok(&["authority", "x509", "revoke", "--id", &old]);
    wait::until(
        "b's revoked CA gone at a's workload",
        Duration::from_secs(10),
        || async {
            let ctx = on_a.fetch_x509_context().await.ok()?;
            let cas = authorities(&ctx, "b.test");
            (!cas.is_empty() && cas.iter().all(|ca| authority_id(ca) != old)).then_some(())
        },
    )
    .await;

    // A new JWT key of b reaches a's JWT bundles too.
    let kid = b.server.cli_ok(&["authority", "jwt", "prepare"]);
    wait::until(
        "b's new JWT key at a's workload",
        Duration::from_secs(10),
        || async {
            let set = on_a.fetch_jwt_bundles().await.ok()?;
            let bundle = set.get(&TrustDomain::new("b.test").unwrap())?;
            bundle.find_jwt_authority(&kid).map(|_| ())
        },
    )
    .await;
}

#[tokio::test]
async fn a_peer_on_https_web_is_trusted_through_its_web_pki_certificate() {
    let ca = WebCa::new();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue_files(certs.path());
    let endpoint = format!(
        "[federation.bundle_endpoint]\nbind = \"127.0.0.1:0\"\nprofile = \"https_web\"\n\
         cert_path = \"{}\"\nkey_path = \"{}\"\nrefresh_hint = \"1s\"\n",
        cert.display(),
        key.display()
    );
    let (a, b) = tokio::join!(
        Domain::start("a.test", "1s", ""),
        Domain::start("b.test", "1s", &endpoint)
    );
    let ca_file = certs.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    a.server.cli_ok(&[
        "federation",
        "create",
        "--trust-domain",
        "b.test",
        "--bundle-endpoint-url",
        &b.endpoint_url(),
        "--profile",
        "https_web",
        "--ca-bundle",
        ca_file.to_str().unwrap(),
    ]);
    let on_a = a.workload(&["b.test"]).await;
    let ctx = context_with(&on_a, "b.test").await;
    assert_eq!(authorities(&ctx, "b.test"), b.server.bundle_der());

    // Without the test CA (the system's roots only) the endpoint is refused.
    let refused = a.server.cli(&[
        "federation",
        "update",
        "--trust-domain",
        "b.test",
        "--bundle-endpoint-url",
        &b.endpoint_url(),
        "--profile",
        "https_web",
    ]);
    assert!(refused.status.success());
    let out = a
        .server
        .cli(&["federation", "refresh", "--trust-domain", "b.test"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS with"), "{err}");
    assert!(refreshes(&a.server, "b.test", "tls").await >= 1.0);
    // ... and the bundle is still held and served.
    let ctx = on_a.fetch_x509_context().await.unwrap();
    assert_eq!(authorities(&ctx, "b.test"), b.server.bundle_der());

    // b renews its certificate from another CA, without a restart: a, told
    // of that CA, fetches from it.
    let other = WebCa::new();
    other.issue_files(certs.path());
    std::fs::write(&ca_file, &other.pem).unwrap();
    a.server.cli_ok(&[
        "federation",
        "update",
        "--trust-domain",
        "b.test",
        "--bundle-endpoint-url",
        &b.endpoint_url(),
        "--profile",
        "https_web",
        "--ca-bundle",
        ca_file.to_str().unwrap(),
    ]);
    wait::until(
        "a fetch through the renewed certificate",
        Duration::from_secs(20),
        || async {
            a.server
                .cli(&["federation", "refresh", "--trust-domain", "b.test"])
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    assert!(b
        .server
        .log_text()
        .contains("bundle endpoint certificate reloaded"));
}

/// Held sequence and CAs of `td` at `domain`'s server.
fn held(domain: &Domain, td: &str) -> serde_json::Value {
    let doc = domain
        .server
        .cli_ok(&["bundle", "show", "--trust-domain", td, "--format", "spiffe"]);
    serde_json::from_str(&doc).unwrap()
}

/// Points `a`'s relationship with b.test elsewhere, refreshes it and checks
/// the refusal: the CLI's error, the metric, the log line, and the bundle
/// held unchanged.
/// Waits until `a`'s audit log holds a `federation_refresh` record for
/// b.test that `matches`.
async fn audited_refresh(a: &Domain, what: &str, matches: impl Fn(&serde_json::Value) -> bool) {
    wait::until(what, Duration::from_secs(10), || async {
        let out = a
            .server
            .audit(&["show", "--kind", "federation_refresh", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["records"]
            .as_array()?
            .iter()
            .any(|r| r["trust_domain"] == "b.test" && matches(r))
            .then_some(())
    })
    .await;
}

async fn refused(a: &Domain, relationship: &[&str], kind: &str, says: &str) {
    let before = held(a, "b.test");
    let mut args = vec!["federation", "update", "--trust-domain", "b.test"];
    args.extend_from_slice(relationship);
    a.server.cli_ok(&args);
    let out = a
        .server
        .cli(&["federation", "refresh", "--trust-domain", "b.test"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{kind}: the refresh must fail");
    assert!(err.contains(says), "{kind}: {err}");
    assert!(
        refreshes(&a.server, "b.test", kind).await >= 1.0,
        "{kind} counted"
    );
    let logged = a.server.log_text();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("federated bundle refresh refused") && l.contains(kind)),
        "{kind} logged"
    );
    assert_eq!(held(a, "b.test"), before, "{kind}: the bundle held is kept");
    let show: serde_json::Value = serde_json::from_str(&a.server.cli_ok(&[
        "federation",
        "show",
        "--trust-domain",
        "b.test",
        "--output",
        "json",
    ]))
    .unwrap();
    assert!(
        show["last_error"].as_str().unwrap().contains(says),
        "{kind}: {show}"
    );
    // And audited (written just after the refusal is answered).
    audited_refresh(a, "the refusal's audit record", |r| {
        r["outcome"]["refused"]["reason"]
            .as_str()
            .is_some_and(|why| why.starts_with(&format!("{kind}: ")))
    })
    .await;
}

/// `--bundle-endpoint-url URL --profile https_spiffe --endpoint-spiffe-id ID`.
fn spiffe_endpoint<'a>(url: &'a str, id: &'a str) -> [&'a str; 6] {
    [
        "--bundle-endpoint-url",
        url,
        "--profile",
        "https_spiffe",
        "--endpoint-spiffe-id",
        id,
    ]
}

// Several threads: the HTTPS peer serves while the CLI blocks this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_answer_is_refused_and_the_bundle_held_is_kept() {
    let (a, mut b) = tokio::join!(
        Domain::start("a.test", "1s", ""),
        Domain::start("b.test", "1s", "")
    );
    a.federate_with(&b);
    let on_a = a.workload(&["b.test"]).await;
    let good = context_with(&on_a, "b.test").await;
    let b_cas = authorities(&good, "b.test");
    // The bundle taken is audited, with its sequence.
    audited_refresh(&a, "the refresh's audit record", |r| {
        r["outcome"] == "ok" && r["sequence"].as_u64() >= Some(1)
    })
    .await;
    let b_url = b.endpoint_url();
    // The endpoint presents an SVID with another SPIFFE ID than the one set.
    let wrong_id = spiffe_endpoint(&b_url, "spiffe://b.test/not-the-server");
    refused(&a, &wrong_id, "tls", "TLS with").await;

    // The endpoint is a.test's own: it serves a.test's bundle as b.test's.
    let a_url = a.endpoint_url();
    let own = spiffe_endpoint(&a_url, "spiffe://a.test/signet/server");
    refused(
        &a,
        &own,
        "wrong_trust_domain",
        "is not of trust domain b.test",
    )
    .await;

    // Web endpoints serving invalid JSON, then b's bundle of a lower sequence.
    let web = WebCa::new();
    let ca_file = a.dir.path().join("web-ca.pem");
    std::fs::write(&ca_file, &web.pem).unwrap();
    let peer = HttpsPeer::start(&web, b"{ this is not a bundle").await;
    let web_args = [
        "--bundle-endpoint-url",
        &peer.url,
        "--profile",
        "https_web",
        "--ca-bundle",
        ca_file.to_str().unwrap(),
    ];
    refused(&a, &web_args, "invalid", "sent no valid bundle").await;
    let mut older = held(&a, "b.test");
    let sequence = older["spiffe_sequence"].as_u64().unwrap();
    assert!(sequence >= 1, "b's bundle has a sequence to go below");
    older["spiffe_sequence"] = (sequence - 1).into();
    peer.serve(older.to_string().as_bytes());
    refused(&a, &web_args, "older_sequence", "is lower than the").await;

    // b's endpoint down: a keeps what it holds, and its workloads keep it.
    b.server.stop();
    let b_itself = spiffe_endpoint(&b_url, "spiffe://b.test/signet/server");
    refused(&a, &b_itself, "connect", "cannot connect to").await;
    let ctx = on_a.fetch_x509_context().await.unwrap();
    assert_eq!(authorities(&ctx, "b.test"), b_cas);
    let bundles = on_a.fetch_x509_bundles().await.unwrap();
    assert!(bundles.get(&TrustDomain::new("b.test").unwrap()).is_some());
}

#[tokio::test]
async fn static_federation_needs_no_endpoint_and_ends_with_bundle_delete() {
    let (a, b) = tokio::join!(
        Domain::start("a.test", "1s", ""),
        Domain::start("b.test", "1s", "")
    );
    let file = b.bundle_file();
    a.server.cli_ok(&[
        "bundle",
        "set",
        "--trust-domain",
        "b.test",
        "--path",
        file.to_str().unwrap(),
    ]);
    let list: serde_json::Value =
        serde_json::from_str(&a.server.cli_ok(&["bundle", "list", "--output", "json"])).unwrap();
    assert_eq!(list["bundles"][0]["trust_domain"], "b.test");
    assert_eq!(list["bundles"][0]["source"], "static");

    let (on_a, on_b) = tokio::join!(a.workload(&["b.test"]), b.workload(&[]));
    let ctx_a = context_with(&on_a, "b.test").await;
    let ctx_b = context_with(&on_b, "b.test").await;
    let id = signet_core::x509::validate_x509_svid(
        &chain(&ctx_b),
        &authorities(&ctx_a, "b.test"),
        SystemClock.now(),
    )
    .unwrap();
    assert_eq!(id.to_string(), "spiffe://b.test/workload");

    let mut stream = on_a.stream_x509_contexts().await.unwrap();
    stream.next().await.unwrap().unwrap();
    a.server
        .cli_ok(&["bundle", "delete", "--trust-domain", "b.test"]);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ctx = stream.next().await.unwrap().unwrap();
            if authorities(&ctx, "b.test").is_empty() {
                return;
            }
        }
    })
    .await
    .expect("b's bundle gone from the open stream within 10 s");
}

#[tokio::test]
async fn relationships_from_the_config_are_applied_at_start_and_survive_a_restart() {
    let b = Domain::start("b.test", "1s", "").await;
    let bundle = b.bundle_file();
    let config = format!(
        "[[federation.federates_with]]\ntrust_domain = \"b.test\"\n\
         bundle_endpoint_url = \"{}\"\nprofile = \"https_spiffe\"\n\
         endpoint_spiffe_id = \"{}\"\ntrust_domain_bundle_path = \"{}\"\n",
        b.endpoint_url(),
        b.endpoint_id(),
        bundle.display()
    );
    let mut a = Domain::start("a.test", "1s", &config).await;
    let on_a = a.workload(&["b.test"]).await;
    let ctx = context_with(&on_a, "b.test").await;
    assert_eq!(authorities(&ctx, "b.test"), b.server.bundle_der());

    a.server.restart().await;
    let list: serde_json::Value =
        serde_json::from_str(&a.server.cli_ok(&["federation", "list", "--output", "json"]))
            .unwrap();
    assert_eq!(list["relationships"].as_array().unwrap().len(), 1);
    assert_eq!(list["relationships"][0]["trust_domain"], "b.test");
    assert_eq!(held(&a, "b.test")["keys"], b.server.spiffe_bundle()["keys"]);
}
