//! Signet federates with the real SPIRE (v1.13.3, from `scripts/build-spire`)
//! both ways over `https_spiffe`: each fetches the other's bundle from its
//! bundle endpoint, each one's workloads get the other's bundle through
//! their own Workload API, verify the other's X509-SVIDs, complete mTLS,
//! and validate the other's JWT-SVIDs through their own agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use signet_core::{Clock, SystemClock};
use signet_tests::checks::authority_id;
use signet_tests::federation::{authorities, chain, context_with, Domain};
use signet_tests::spiffe_tls::{handshake, Side};
use signet_tests::spire::{EndpointProfile, SpireAgent, SpireServer};
use signet_tests::{my_uid_selector, wait};
use spiffe::WorkloadApiClient;

/// Several threads: the CLIs block while the daemons are waited on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signet_and_spire_federate_both_ways() {
    let (spire, a) = tokio::join!(
        SpireServer::start("spire.test", ""),
        Domain::start("a.test", "1s", "")
    );
    let spire_agent = SpireAgent::start(&spire).await;

    // SPIRE federates with a.test (its CLI), a.test with spire.test (ours).
    let a_bundle = a.bundle_file();
    let a_endpoint = a.endpoint_id();
    spire.federation_create(
        "a.test",
        &a.endpoint_url(),
        EndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: &a_endpoint,
        },
        Some(&a_bundle),
    );
    let spire_bundle = a.dir.path().join("spire-bundle.json");
    std::fs::write(&spire_bundle, spire.bundle_show_spiffe().to_string()).unwrap();
    a.server.cli_ok(&[
        "federation",
        "create",
        "--trust-domain",
        "spire.test",
        "--bundle-endpoint-url",
        &spire.bundle_endpoint_url(),
        "--profile",
        "https_spiffe",
        "--endpoint-spiffe-id",
        &spire.bundle_endpoint_spiffe_id(),
        "--trust-domain-bundle",
        spire_bundle.to_str().unwrap(),
    ]);
    // Signet fetched SPIRE's bundle from SPIRE's endpoint, and SPIRE ours.
    let fetched = a
        .server
        .cli_ok(&["federation", "refresh", "--trust-domain", "spire.test"]);
    assert!(!fetched.is_empty());
    let out = spire.federation_refresh("a.test");
    assert!(
        out.status.success(),
        "SPIRE fetches a.test's bundle from Signet's endpoint: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A workload on each side, federating with the other.
    let spire_id = spire.id("/workload");
    spire.entry_create(
        &spire_agent.spiffe_id,
        &spire_id,
        &[&my_uid_selector()],
        &["-federatesWith", "spiffe://a.test"],
    );
    let on_a = a.workload(&["spire.test"]).await;
    let on_spire = WorkloadApiClient::connect_to(spire_agent.endpoint())
        .await
        .unwrap();

    // Each gets the other's bundle through its own Workload API.
    let ctx_spire = context_with(&on_spire, "a.test").await;
    assert_eq!(authorities(&ctx_spire, "a.test"), a.server.bundle_der());
    let ctx_a = context_with(&on_a, "spire.test").await;
    let spire_cas = signet_core::pem::decode_certs(spire.bundle_show_pem().as_bytes()).unwrap();
    assert_eq!(authorities(&ctx_a, "spire.test"), spire_cas);

    // X509-SVIDs verify across, and mTLS completes both ways.
    let verified = signet_core::x509::validate_x509_svid(
        &chain(&ctx_spire),
        &authorities(&ctx_a, "spire.test"),
        SystemClock.now(),
    )
    .unwrap();
    assert_eq!(verified.to_string(), spire_id);
    let (side_a, side_spire) = (Side::from_context(&ctx_a), Side::from_context(&ctx_spire));
    let (spire_saw, a_saw) = handshake(&side_a, &side_spire).await.unwrap();
    assert_eq!(spire_saw, "spiffe://a.test/workload");
    assert_eq!(a_saw, spire_id);
    handshake(&side_spire, &side_a).await.unwrap();

    // A JWT-SVID minted by SPIRE validates through Signet's agent...
    let token = spire.jwt_mint(&spire_id, "signet-service");
    let validated = on_a
        .validate_jwt_token("signet-service", &token)
        .await
        .unwrap();
    assert_eq!(validated.spiffe_id().to_string(), spire_id);
    // ... and one of Signet's through SPIRE's agent.
    let token = on_a.fetch_jwt_token(["spire-service"], None).await.unwrap();
    let validated = wait::until(
        "SPIRE's agent validating a.test's JWT-SVID",
        Duration::from_secs(30),
        || async {
            on_spire
                .validate_jwt_token("spire-service", &token)
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(
        validated.spiffe_id().to_string(),
        "spiffe://a.test/workload"
    );

    // a.test prepares a new CA: SPIRE fetches it from our endpoint and its
    // workload gets it.
    let prepared = a.server.cli_ok(&["authority", "x509", "prepare"]);
    wait::until(
        "a.test's new CA at SPIRE's workload",
        Duration::from_secs(60),
        || async {
            let _ = spire.federation_refresh("a.test");
            let ctx = on_spire.fetch_x509_context().await.ok()?;
            authorities(&ctx, "a.test")
                .iter()
                .any(|ca| authority_id(ca) == prepared)
                .then_some(())
        },
    )
    .await;
}
