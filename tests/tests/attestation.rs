//! What the server refuses: reused or expired join tokens, CSRs an agent is
//! not entitled to, agents from another CA, malformed entries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use signet_core::{Clock, SystemClock};
use std::time::Duration;

use signet_proto::node::BatchSignX509SvidRequest;
use signet_tests::node::{attest, node_client, sign_params, tls_outcome, TlsOutcome};
use signet_tests::{my_uid_selector, start_pair, TestServer};
use tonic::Code;

#[tokio::test]
async fn join_token_is_single_use() {
    let server = TestServer::start().await;
    let token = server.join_token();
    let (result, _) = attest(&server, &token).await.expect("first use attests");
    assert_eq!(
        result.spiffe_id,
        server.id(&format!("/signet/agent/join_token/{token}"))
    );
    assert!(!result.svid_chain.is_empty());

    let err = attest(&server, &token)
        .await
        .expect_err("second use is refused");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("join token"), "{}", err.message());

    let err = attest(&server, "no-such-token")
        .await
        .expect_err("unknown token");
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn expired_join_token_is_refused() {
    let server = TestServer::start().await;
    let token = server.cli_ok(&["token", "generate", "--ttl", "1s"]);
    // The only real wait in this suite: a token TTL cannot be shorter than 1 s
    // and the server runs in another process with the real clock.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = attest(&server, &token).await.expect_err("expired token");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("expired"), "{}", err.message());
}

#[tokio::test]
async fn agent_cannot_get_svid_for_entry_of_another_agent() {
    let (server, other_agent) = start_pair(&[]).await;
    let theirs_id = server.id("/workload/theirs");
    let theirs = server.create_entry(
        &theirs_id,
        &other_agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );

    let (me, key) = attest(&server, &server.join_token()).await.unwrap();
    let mut client = node_client(&server.addr, &me.svid_chain, &key.serialize_der()).await;
    let (params, _) = sign_params(&theirs, &theirs_id);
    let resp = client
        .batch_sign_x509_svid(BatchSignX509SvidRequest {
            params: vec![params],
        })
        .await
        .expect("the call itself succeeds")
        .into_inner();
    let result = &resp.results[0];
    assert!(result.svid_chain.is_empty());
    assert_eq!(
        Code::from(result.error_code),
        Code::PermissionDenied,
        "{}",
        result.error_message
    );
}

#[tokio::test]
async fn csr_whose_spiffe_id_differs_from_the_entry_is_refused() {
    let server = TestServer::start().await;
    let (me, key) = attest(&server, &server.join_token()).await.unwrap();
    let mine_id = server.id("/workload/mine");
    let mine = server.create_entry(&mine_id, &me.spiffe_id, &[&my_uid_selector()], &[]);
    let mut client = node_client(&server.addr, &me.svid_chain, &key.serialize_der()).await;

    let (wrong, _) = sign_params(&mine, &server.id("/workload/admin"));
    let (right, right_key) = sign_params(&mine, &mine_id);
    let resp = client
        .batch_sign_x509_svid(BatchSignX509SvidRequest {
            params: vec![wrong, right],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        Code::from(resp.results[0].error_code),
        Code::InvalidArgument,
        "{}",
        resp.results[0].error_message
    );
    assert!(resp.results[0].svid_chain.is_empty());
    // The good item of the same batch is still signed, for the key in its CSR.
    assert_eq!(
        resp.results[1].error_code, 0,
        "{}",
        resp.results[1].error_message
    );
    signet_core::x509::key_matches_leaf(&resp.results[1].svid_chain[0], &right_key.serialize_der())
        .unwrap();
}

#[tokio::test]
async fn agent_with_certificate_from_another_ca_is_refused() {
    let server = TestServer::start().await;
    // A CA that looks like ours but is not: same trust domain, other key.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let td = signet_core::TrustDomain::new("example.org").unwrap();
    let now = SystemClock.now();
    let ca_params =
        signet_core::x509::ca_params(&td, now, now + Duration::from_secs(3600)).unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(ca_cert.der(), &ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let id = signet_core::SpiffeId::parse(&server.id("/signet/agent/join_token/forged")).unwrap();
    let leaf =
        signet_core::x509::leaf_params(&id, &[], now, now + Duration::from_secs(600)).unwrap();
    let leaf_der = signet_core::x509::sign_leaf(&leaf, &key, &issuer).unwrap();

    // Refused in the TLS handshake, saying why, and nothing served.
    assert_eq!(
        tls_outcome(
            &server.addr,
            std::slice::from_ref(&leaf_der),
            &key.serialize_der()
        )
        .await,
        TlsOutcome::Alert(rustls::AlertDescription::UnknownCA)
    );
    // The same server serves a genuine agent on the same kind of connection.
    let agent = signet_tests::TestAgent::start(&server).await;
    let (chain, key) = agent.identity();
    assert_eq!(
        tls_outcome(&server.addr, &chain, &key).await,
        TlsOutcome::Accepted
    );
    let mut genuine = node_client(&server.addr, &chain, &key).await;
    let mut sync = genuine
        .sync(signet_proto::node::SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        sync.message().await.unwrap().is_some(),
        "a genuine agent is served"
    );
}

#[tokio::test]
async fn malformed_spiffe_id_or_selector_is_refused_with_the_rule() {
    let server = TestServer::start().await;
    let parent = server.id("/signet/agent/join_token/x");
    let cases: [(&str, &str, &str); 4] = [
        ("spiffe://example.org/a/", "unix:uid:1", "trailing slash"),
        ("spiffe://Example.org/a", "unix:uid:1", "lowercase"),
        ("http://example.org/a", "unix:uid:1", "spiffe://"),
        ("spiffe://example.org/a", "unixuid1", "type:value"),
    ];
    for (id, selector, rule) in cases {
        let out = server.cli(&[
            "entry",
            "create",
            "--spiffe-id",
            id,
            "--parent-id",
            &parent,
            "--selector",
            selector,
        ]);
        assert!(!out.status.success(), "{id} / {selector} must be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(rule),
            "error for {id} / {selector} names the rule {rule:?}: {stderr}"
        );
    }
    assert_eq!(server.cli_ok(&["entry", "count"]), "0");
}
