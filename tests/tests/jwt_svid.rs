//! JWT-SVIDs through the whole Workload API: fetched and validated by the
//! `spiffe` crate three ways, and every bad token refused with a reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use signet_proto::workload::{JwtsvidRequest, ValidateJwtsvidRequest};
use signet_tests::checks::now_unix;
use signet_tests::workload::{raw_client, with_header};
use signet_tests::{my_uid_selector, start_pair, wait, TestAgent, TestServer};
use spiffe::{JwtSvid, WorkloadApiClient};
use tonic::Code;

async fn registered_pair() -> (TestServer, TestAgent, String) {
    let (server, agent) = start_pair(&[]).await;
    let id = server.id("/workload/jwt");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    (server, agent, id)
}

async fn fetch_token(client: &WorkloadApiClient, audience: &str) -> JwtSvid {
    wait::until("a JWT-SVID", Duration::from_secs(20), || async {
        client.fetch_jwt_svid([audience], None).await.ok()
    })
    .await
}

#[tokio::test]
async fn workload_fetches_jwt_svid_and_it_validates_three_ways() {
    let (server, agent, id) = registered_pair().await;
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let svid = fetch_token(&client, "svc-a").await;
    assert_eq!(svid.spiffe_id().to_string(), id);
    assert_eq!(svid.audience(), ["svc-a".to_string()]);
    let lifetime = svid.expiry().unix_timestamp() - now_unix();
    assert!(
        lifetime > 200 && lifetime <= 300,
        "default TTL 5 min, got {lifetime}s"
    );

    // Header and claims as the JWT-SVID standard says.
    let (header, claims) = signet_core::jwt::parse_unverified(svid.token()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()));
    for claim in ["sub", "aud", "exp", "iat", "jti"] {
        assert!(claims.contains_key(claim), "claim {claim} present");
    }
    assert!(claims["aud"].is_array());

    // 1. by the agent (ValidateJWTSVID)
    let validated = client
        .validate_jwt_token("svc-a", svid.token())
        .await
        .unwrap();
    assert_eq!(validated.spiffe_id().to_string(), id);
    // 2. locally against the Workload API's JWT bundles
    let bundles = client.fetch_jwt_bundles().await.unwrap();
    let local = JwtSvid::parse_and_validate(svid.token(), &bundles, &["svc-a"]).unwrap();
    assert_eq!(local.spiffe_id().to_string(), id);
    // 3. by our CLI
    let out = agent.cli(&[
        "api",
        "validate",
        "jwt",
        "--audience",
        "svc-a",
        "--svid",
        svid.token(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));

    // The key that signed it is published in the server's SPIFFE bundle.
    let bundle = server.spiffe_bundle();
    assert!(bundle["spiffe_sequence"].as_u64().is_some());
    assert!(bundle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["use"] == "jwt-svid" && k["kid"] == header["kid"]));
}

#[tokio::test]
async fn agent_cli_fetches_jwt_svid() {
    let (_server, agent, id) = registered_pair().await;
    let out = wait::until("api fetch jwt", Duration::from_secs(20), || async {
        let out = agent.cli(&[
            "api",
            "fetch",
            "jwt",
            "--audience",
            "svc-b",
            "--output",
            "json",
        ]);
        out.status.success().then_some(out)
    })
    .await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["svids"][0]["spiffe_id"], id);
    let token = v["svids"][0]["svid"].as_str().unwrap();
    let (_, claims) = signet_core::jwt::parse_unverified(token).unwrap();
    assert_eq!(claims["aud"], json!(["svc-b"]));
}

#[tokio::test]
async fn jwt_svid_for_an_identity_the_caller_lacks_is_permission_denied() {
    let (server, agent, _) = registered_pair().await;
    let mut raw = raw_client(&agent.socket_path).await;
    // Wait until the caller's own identity is served, so the refusal is about the ID.
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    fetch_token(&client, "svc").await;

    let err = raw
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["svc".into()],
            spiffe_id: server.id("/someone/else"),
        }))
        .await
        .expect_err("not the caller's identity");
    assert_eq!(err.code(), Code::PermissionDenied);

    let err = raw
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![],
            spiffe_id: String::new(),
        }))
        .await
        .expect_err("empty audience");
    assert_eq!(err.code(), Code::InvalidArgument);
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn validate_refuses_every_bad_token_with_invalid_argument() {
    let (server, agent, id) = registered_pair().await;
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let good = fetch_token(&client, "svc").await;
    let signer = server.jwt_signer();
    let kid = signer.kid().to_string();
    let now = now_unix();
    let claims = |extra: serde_json::Value| {
        let mut c = json!({"sub": id, "aud": ["svc"], "exp": now + 300, "iat": now});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let sign = |header: serde_json::Value, claims: serde_json::Value| {
        signet_core::jwt::sign_compact(&signer, &header, &claims).unwrap()
    };
    let es256 = json!({"alg": "ES256", "kid": kid, "typ": "JWT"});

    // HS256 "signed" with the public key's bytes: the classic key-confusion attack.
    let public = signer.public_key();
    let signet_core::jwt::JwtPublicKey::P256(public_bytes) = &public else {
        unreachable!()
    };
    let hs_input = format!(
        "{}.{}",
        b64(&json!({"alg": "HS256", "kid": kid})),
        b64(&claims(json!({})))
    );
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public_bytes),
        hs_input.as_bytes(),
    );
    let hs256 = format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));

    // The first signature character: all its bits count (the last one's low
    // bits are base64 padding, so changing it may only break the encoding).
    let (input, sig) = good.token().rsplit_once('.').unwrap();
    let first = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{input}.{first}{}", &sig[1..]);

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": kid})),
                b64(&claims(json!({})))
            ),
            "svc",
        ),
        ("HS256 with the public key", hs256, "svc"),
        ("tampered signature", tampered, "svc"),
        (
            "unknown kid",
            sign(json!({"alg": "ES256", "kid": "nope"}), claims(json!({}))),
            "svc",
        ),
        (
            "no kid",
            sign(json!({"alg": "ES256"}), claims(json!({}))),
            "svc",
        ),
        (
            "expired",
            sign(
                es256.clone(),
                claims(json!({"exp": now - 600, "iat": now - 900})),
            ),
            "svc",
        ),
        (
            "nbf in the future",
            sign(es256.clone(), claims(json!({"nbf": now + 600}))),
            "svc",
        ),
        (
            "audience not contained",
            sign(es256.clone(), claims(json!({}))),
            "other",
        ),
        (
            "sub of a trust domain without bundle",
            sign(
                es256.clone(),
                claims(json!({"sub": "spiffe://elsewhere.org/x"})),
            ),
            "svc",
        ),
        (
            "unknown header field",
            sign(
                json!({"alg": "ES256", "kid": kid, "jku": "https://evil"}),
                claims(json!({})),
            ),
            "svc",
        ),
        ("two parts", "abc.def".to_string(), "svc"),
        ("bad base64", "!!!.e30.e30".to_string(), "svc"),
        (
            "bad JSON",
            format!(
                "{}.{}.e30",
                URL_SAFE_NO_PAD.encode("{not json"),
                b64(&claims(json!({})))
            ),
            "svc",
        ),
        (
            "empty audience in the request",
            good.token().to_string(),
            "",
        ),
    ];
    let mut raw = raw_client(&agent.socket_path).await;
    // The genuine token passes, so each refusal below is about its one defect.
    raw.validate_jwtsvid(with_header(ValidateJwtsvidRequest {
        audience: "svc".into(),
        svid: good.token().into(),
    }))
    .await
    .expect("the genuine token validates");
    for (what, token, audience) in cases {
        let err = raw
            .validate_jwtsvid(with_header(ValidateJwtsvidRequest {
                audience: audience.into(),
                svid: token,
            }))
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(!err.message().is_empty(), "{what}: a reason is given");
    }
}
