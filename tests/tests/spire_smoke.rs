//! The SPIRE fixture is real: a SPIRE server and agent issue a workload its
//! X509-SVID through SPIRE's Workload API, serve a SPIFFE bundle and mint
//! JWT-SVIDs. The federation interop tests stand on this.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use signet_tests::spire::{SpireAgent, SpireServer};
use signet_tests::{my_uid_selector, wait};
use spiffe::WorkloadApiClient;

#[tokio::test]
async fn spire_issues_workload_svid_bundle_and_jwt() {
    let server = SpireServer::start("spire.test", "").await;
    let agent = SpireAgent::start(&server).await;
    let id = server.id("/workload/me");
    server.entry_create(&agent.spiffe_id, &id, &[&my_uid_selector()], &[]);

    // SPIRE's agent learns of the entry on its next sync (every few seconds).
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let svid = wait::until(
        "an X509-SVID from SPIRE",
        Duration::from_secs(60),
        || async { client.fetch_x509_svid().await.ok() },
    )
    .await;
    assert_eq!(svid.spiffe_id().to_string(), id);

    let bundle = server.bundle_show_spiffe();
    assert!(
        bundle["spiffe_sequence"].is_u64(),
        "spiffe_sequence: {bundle}"
    );
    let keys = bundle["keys"].as_array().expect("keys");
    assert!(
        keys.iter().any(|k| k["use"] == "x509-svid"),
        "an x509-svid key: {bundle}"
    );

    let token = server.jwt_mint(&id, "interop");
    assert_eq!(token.split('.').count(), 3, "JWS compact: {token}");
    assert_eq!(
        server.bundle_endpoint_spiffe_id(),
        "spiffe://spire.test/spire/server"
    );
}
