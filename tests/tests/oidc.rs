//! The OIDC discovery provider, checked the way a cloud checks it: PyJWT's
//! `PyJWKClient` (an independent client) discovers the JWKS from the
//! issuer URL and validates a JWT-SVID fetched through the Workload API,
//! for ES256 and RS256 keys; a token whose key was rotated out fails once
//! that key left the JWKS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use signet_tests::federation::WebCa;
use signet_tests::{free_port, my_uid_selector, wait, TestAgent, TestServer};
use spiffe::WorkloadApiClient;

const PATIENCE: Duration = Duration::from_secs(20);
const AUDIENCE: &str = "sts.amazonaws.com";

/// A server with `[oidc]` on a port of its own and `jwt_key_type`, an
/// agent, and an entry for this process.
async fn start(key_type: &str) -> (TestServer, TestAgent, String, String) {
    start_with(key_type, None).await
}

/// As [`start`]; HTTPS with a certificate from `web` in `dir` when given.
async fn start_with(
    key_type: &str,
    web: Option<(&WebCa, &Path)>,
) -> (TestServer, TestAgent, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut oidc = format!("bind = \"127.0.0.1:{port}\"\n");
    let issuer = match web {
        None => format!("http://127.0.0.1:{port}"),
        Some((ca, files)) => {
            let (cert, key) = ca.issue_files(files);
            oidc.push_str(&format!(
                "tls_cert_path = {cert:?}\ntls_key_path = {key:?}\n"
            ));
            format!("https://localhost:{port}/tenant-1")
        }
    };
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!("jwt_key_type = \"{key_type}\"\n[oidc]\n{oidc}issuer = \"{issuer}\"\n"),
    )
    .unwrap();
    let server = TestServer::start_with(&["--config", config.to_str().unwrap()]).await;
    let agent = TestAgent::start(&server).await;
    let id = server.id("/workload/cloud-bound");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    (server, agent, issuer, id)
}

async fn token(agent: &TestAgent) -> String {
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    wait::until("a JWT-SVID", PATIENCE, || async {
        client.fetch_jwt_svid([AUDIENCE], None).await.ok()
    })
    .await
    .token()
    .to_owned()
}

/// PyJWT's verdict on `token`, found from the issuer URL alone.
async fn cloud_check(issuer: &str, token: &str) -> Value {
    cloud_check_trusting(issuer, token, None).await
}

/// As [`cloud_check`], with `roots` as the Web PKI roots (a PEM file).
async fn cloud_check_trusting(issuer: &str, token: &str, roots: Option<&Path>) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/oidc_check.py");
    let (issuer, token) = (issuer.to_owned(), token.to_owned());
    let roots = roots.map(Path::to_owned);
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("python3");
        cmd.args([script, &issuer, &token, AUDIENCE]);
        if let Some(roots) = roots {
            cmd.env("SSL_CERT_FILE", roots);
        }
        cmd.output().expect("run python3")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "oidc_check.py failed (needs PyJWT with cryptography, which scripts/test installs): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_validates_es256_and_rs256_jwt_svids_from_the_issuer_url_alone() {
    for (key_type, alg) in [("ec-p256", "ES256"), ("rsa-2048", "RS256")] {
        let (server, agent, issuer, id) = start(key_type).await;
        let token = token(&agent).await;
        let seen = cloud_check(&issuer, &token).await;
        assert_eq!(seen["ok"], true, "{key_type}: {seen}");
        assert_eq!(seen["alg"], alg);
        assert_eq!(seen["sub"], id.as_str());
        assert_eq!(seen["iss"], issuer.as_str(), "the token carries the issuer");
        let discovery = &seen["discovery"];
        assert_eq!(discovery["issuer"], issuer.as_str());
        assert_eq!(discovery["jwks_uri"], format!("{issuer}/keys"));
        assert_eq!(
            discovery["response_types_supported"],
            serde_json::json!(["id_token"])
        );
        assert_eq!(
            discovery["subject_types_supported"],
            serde_json::json!(["public"])
        );
        assert_eq!(
            discovery["id_token_signing_alg_values_supported"],
            serde_json::json!([alg])
        );
        // The key in the JWKS is the one the server lists.
        let active = server.authority_in_state("jwt", "active").unwrap();
        assert_eq!(seen["kid"], active.as_str());
        // The agent validates the same token for its workloads.
        let client = WorkloadApiClient::connect_to(agent.endpoint())
            .await
            .unwrap();
        let validated = client.validate_jwt_token(AUDIENCE, &token).await.unwrap();
        assert_eq!(validated.spiffe_id().to_string(), id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_of_a_rotated_out_key_fails_once_the_key_left_the_jwks() {
    let (server, agent, issuer, _) = start("ec-p256").await;
    let old_token = token(&agent).await;
    let old_kid = server.authority_in_state("jwt", "active").unwrap();
    assert_eq!(cloud_check(&issuer, &old_token).await["ok"], true);

    let new_kid = server.cli_ok(&["authority", "jwt", "prepare"]);
    server.cli_ok(&["authority", "jwt", "activate"]);
    // Still in the JWKS while old: its tokens still validate.
    assert_eq!(cloud_check(&issuer, &old_token).await["ok"], true);
    server.cli_ok(&["authority", "jwt", "taint", "--id", &old_kid]);
    server.cli_ok(&["authority", "jwt", "revoke", "--id", &old_kid]);
    let seen = cloud_check(&issuer, &old_token).await;
    assert_eq!(seen["ok"], false, "{seen}");
    assert!(
        seen["error"].as_str().unwrap().contains(&old_kid),
        "the refusal names the missing kid: {seen}"
    );
    // A token minted now is signed by the new key and validates.
    let fresh = wait::until("a token of the new key", PATIENCE, || {
        let agent = &agent;
        let new_kid = new_kid.clone();
        async move {
            let t = token(agent).await;
            let (header, _) = signet_core::jwt::parse_unverified(&t).unwrap();
            (header["kid"] == new_kid.as_str()).then_some(t)
        }
    })
    .await;
    let seen = cloud_check(&issuer, &fresh).await;
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["kid"], new_kid.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_over_https_under_the_issuer_path_is_trusted_through_web_pki() {
    let ca = WebCa::new();
    let files = tempfile::tempdir().unwrap();
    let (_server, agent, issuer, id) = start_with("rsa-2048", Some((&ca, files.path()))).await;
    let roots = files.path().join("roots.pem");
    std::fs::write(&roots, &ca.pem).unwrap();
    let token = token(&agent).await;
    let seen = cloud_check_trusting(&issuer, &token, Some(&roots)).await;
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["sub"], id.as_str());
    assert_eq!(seen["iss"], issuer.as_str());
    let port = issuer
        .trim_start_matches("https://localhost:")
        .split('/')
        .next()
        .unwrap();
    assert_eq!(
        seen["discovery"]["jwks_uri"],
        format!("https://localhost:{port}/keys")
    );
}
