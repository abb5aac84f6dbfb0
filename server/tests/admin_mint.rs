//! Credentials outside any agent: `signet-server jwt mint` and `x509 mint`
//! (the real binary) against an in-process server, and the Admin RPCs'
//! refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use signet_core::Clock;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use signet_core::jwt::{parse_unverified, validate_jwt_svid, Jwk, JwtPublicKey, ValidationOptions};
use signet_core::x509::{build_csr, cert_info, key_matches_leaf, validate_x509_svid};
use signet_core::{SpiffeId, SystemClock, TrustDomain};
use signet_proto::admin::{MintJwtSvidRequest, MintX509SvidRequest};
use signet_server::app::{start, RunningServer};
use signet_server::config::{FileConfig, RuntimeConfig};
use tonic::Code;

async fn server(dir: &Path) -> RunningServer {
    let config = RuntimeConfig::try_from(FileConfig {
        data_dir: Some(dir.join("data")),
        admin_socket: Some(dir.join("admin.sock")),
        bind: Some("127.0.0.1:0".into()),
        ..FileConfig::default()
    })
    .unwrap();
    start(config, Arc::new(SystemClock)).await.unwrap()
}

/// Runs the CLI (blocking, so off the runtime's threads); stdout on success.
async fn cli(args: Vec<String>) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_signet-server"))
            .args(&args)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap())
        } else {
            Err(String::from_utf8(out.stderr).unwrap())
        }
    })
    .await
    .unwrap()
}

fn args(socket: &Path, rest: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
    v.push("--admin-socket".into());
    v.push(socket.display().to_string());
    v
}

#[tokio::test]
async fn jwt_mint_prints_a_token_that_validates_against_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let sock = s.admin_socket.clone();

    let out = cli(args(
        &sock,
        &[
            "jwt",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/ci",
            "--audience",
            "deploy",
            "--audience",
            "vault",
        ],
    ))
    .await
    .unwrap();
    let token = out.trim_end();
    assert_eq!(out, format!("{token}\n"), "the token alone");

    let spiffe = cli(args(&sock, &["bundle", "show", "--format", "spiffe"]))
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&spiffe).unwrap();
    assert!(doc["spiffe_sequence"].as_u64().unwrap() >= 1);
    assert_eq!(doc["spiffe_refresh_hint"], 300);
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["use"], "x509-svid");
    assert_eq!(keys[0]["x5c"].as_array().unwrap().len(), 1);
    assert_eq!(keys[1]["use"], "jwt-svid");
    let jwk: Jwk = serde_json::from_value(keys[1].clone()).unwrap();
    let kid = jwk.kid.clone().unwrap();
    let bundles = [(
        TrustDomain::new("example.org").unwrap(),
        [(kid.clone(), JwtPublicKey::from_jwk(&jwk).unwrap())]
            .into_iter()
            .collect(),
    )]
    .into_iter()
    .collect();
    let opts = ValidationOptions {
        now: SystemClock.now(),
        leeway: Duration::from_secs(5),
    };
    let v = validate_jwt_svid(token, "vault", &bundles, opts).unwrap();
    assert_eq!(v.spiffe_id.to_string(), "spiffe://example.org/ci");
    assert_eq!(v.kid, kid);
    let (_, claims) = parse_unverified(token).unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    let json = cli(args(
        &sock,
        &[
            "jwt",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/ci",
            "--audience",
            "a",
            "--ttl",
            "90s",
            "--output",
            "json",
        ],
    ))
    .await
    .unwrap();
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        j["expires_at"].as_i64().unwrap() - j["issued_at"].as_i64().unwrap(),
        90
    );
    assert!(j["token"].as_str().unwrap().split('.').count() == 3);

    // Another trust domain, or no path: refused with the reason.
    let err = cli(args(
        &sock,
        &[
            "jwt",
            "mint",
            "--spiffe-id",
            "spiffe://other.org/ci",
            "--audience",
            "a",
        ],
    ))
    .await
    .unwrap_err();
    assert!(err.contains("not in the server's trust domain"), "{err}");

    let mut admin = signet_server::cli::client::connect(&sock).await.unwrap();
    for (id, audience) in [
        ("spiffe://other.org/ci", vec!["a".to_owned()]),
        ("not a spiffe id", vec!["a".to_owned()]),
        ("spiffe://example.org/ci", vec![]),
        ("spiffe://example.org/ci", vec![String::new()]),
    ] {
        let err = admin
            .mint_jwt_svid(MintJwtSvidRequest {
                spiffe_id: id.into(),
                audience,
                ttl: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{id}: {}", err.message());
    }
    s.stop().await;
}

#[tokio::test]
async fn x509_mint_keeps_the_key_local_and_the_chain_validates() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let sock = s.admin_socket.clone();

    // Text: chain, key, bundle as PEM on stdout.
    let out = cli(args(
        &sock,
        &[
            "x509",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/ci",
            "--dns",
            "ci.local",
            "--ttl",
            "10m",
        ],
    ))
    .await
    .unwrap();
    let certs = signet_core::pem::decode_certs(out.as_bytes()).unwrap();
    assert_eq!(certs.len(), 2, "leaf then the CA");
    let key_at = out.find("-----BEGIN PRIVATE KEY-----").unwrap();
    let bundle_at = out.rfind("-----BEGIN CERTIFICATE-----").unwrap();
    assert!(out.starts_with("-----BEGIN CERTIFICATE-----") && key_at < bundle_at);
    let key = signet_core::pem::decode_private_key(out.as_bytes()).unwrap();
    let chain = vec![certs[0].clone()];
    let bundle = vec![certs[1].clone()];
    let id = validate_x509_svid(&chain, &bundle, SystemClock.now()).unwrap();
    assert_eq!(id.to_string(), "spiffe://example.org/ci");
    key_matches_leaf(&certs[0], &key).unwrap();
    let info = cert_info(&certs[0]).unwrap();
    let life = info.not_after.duration_since(SystemClock.now()).unwrap();
    assert!(life <= Duration::from_secs(600) && life > Duration::from_secs(590));
    assert!(
        info.not_before < SystemClock.now() - Duration::from_secs(20),
        "back-dated"
    );

    // --write DIR: three files, the key 0600.
    let out_dir = dir.path().join("out");
    let out = cli(args(
        &sock,
        &[
            "x509",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/ci",
            "--write",
            out_dir.to_str().unwrap(),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(
        out,
        format!(
            "X.509-SVID written to {0}/svid.pem\nPrivate key written to {0}/key.pem\nBundle written to {0}/bundle.pem\n",
            out_dir.display()
        )
    );
    let read = |f: &str| std::fs::read(out_dir.join(f)).unwrap();
    let mode = std::fs::metadata(out_dir.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let chain = signet_core::pem::decode_certs(&read("svid.pem")).unwrap();
    let bundle = signet_core::pem::decode_certs(&read("bundle.pem")).unwrap();
    let key = signet_core::pem::decode_private_key(&read("key.pem")).unwrap();
    validate_x509_svid(&chain, &bundle, SystemClock.now()).unwrap();
    key_matches_leaf(&chain[0], &key).unwrap();

    // JSON.
    let json = cli(args(
        &sock,
        &[
            "x509",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/ci",
            "--output",
            "json",
        ],
    ))
    .await
    .unwrap();
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(j["spiffe_id"], "spiffe://example.org/ci");
    let chain = signet_core::pem::decode_certs(j["svid_pem"].as_str().unwrap().as_bytes()).unwrap();
    let bundle =
        signet_core::pem::decode_certs(j["bundle_pem"].as_str().unwrap().as_bytes()).unwrap();
    validate_x509_svid(&chain, &bundle, SystemClock.now()).unwrap();
    assert_eq!(
        j["expires_at"].as_i64().unwrap(),
        signet_core::clock::unix_seconds(cert_info(&chain[0]).unwrap().not_after)
    );

    // The Admin RPC refuses a CSR for another trust domain and garbage.
    let mut admin = signet_server::cli::client::connect(&sock).await.unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let foreign = build_csr(&key, &SpiffeId::parse("spiffe://other.org/ci").unwrap()).unwrap();
    for csr in [foreign, b"garbage".to_vec()] {
        let err = admin
            .mint_x509_svid(MintX509SvidRequest {
                csr,
                ttl: 0,
                dns_names: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    }
    s.stop().await;
}
