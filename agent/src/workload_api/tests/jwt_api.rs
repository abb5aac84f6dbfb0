//! FetchJWTSVID, FetchJWTBundles and ValidateJWTSVID on the real socket.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use prost_types::value::Kind;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use signet_core::clock::unix_seconds;
use signet_core::jwt::{mint_jwt_svid, JwtError, JwtPublicKey, MintParams};
use signet_core::Clock;
use signet_proto::workload::{
    JwtBundlesRequest, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse,
};

use super::*;

fn jwt_request(audience: &[&str], spiffe_id: &str) -> JwtsvidRequest {
    JwtsvidRequest {
        audience: audience.iter().map(|s| s.to_string()).collect(),
        spiffe_id: spiffe_id.into(),
    }
}

async fn fetch_jwt(agent: &Agent, audience: &[&str], id: &str) -> Result<JwtsvidResponse, Status> {
    agent
        .client
        .clone()
        .fetch_jwtsvid(crate::cli::client::request(jwt_request(audience, id)))
        .await
        .map(|r| r.into_inner())
}

async fn validate(
    agent: &Agent,
    audience: &str,
    svid: &str,
) -> Result<ValidateJwtsvidResponse, Status> {
    agent
        .client
        .clone()
        .validate_jwtsvid(crate::cli::client::request(ValidateJwtsvidRequest {
            audience: audience.into(),
            svid: svid.into(),
        }))
        .await
        .map(|r| r.into_inner())
}

/// An agent where this process holds /me (hint "internal") and /alpha, with
/// JWT-SVIDs signed by the CA's JWT key.
async fn start_jwt_agent(ca: &TestCa, delay: Duration) -> Agent {
    let sel = my_uid_selector();
    let snap = snapshot(
        ca,
        vec![
            (entry("e1", "/me", &sel, "internal"), None),
            (entry("e2", "/alpha", &sel, ""), None),
            (entry("e3", "/other", "unix:uid:4294967294", ""), None),
        ],
    );
    let mut minter = FakeMinter::new(
        ca.jwt.clone(),
        Arc::new(SystemClock),
        Duration::from_secs(300),
    )
    .with_subject("e1", "spiffe://example.org/me")
    .with_subject("e2", "spiffe://example.org/alpha")
    .with_subject("e3", "spiffe://example.org/other");
    minter.delay = delay;
    start_with(snap, minter).await
}

#[tokio::test]
async fn fetch_jwt_svid_refuses_bad_requests_with_the_spiffe_status_codes() {
    let ca = TestCa::new();
    let agent = start_jwt_agent(&ca, Duration::ZERO).await;

    let err = agent
        .client
        .clone()
        .fetch_jwtsvid(Request::new(jwt_request(&["a"], "")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "security header missing from request");

    for (audience, id) in [
        (&[][..], ""),
        (&["a", ""][..], ""),
        (&["a"][..], "spiffe://example.org/bad//path"),
        (&["a"][..], "not a spiffe id"),
    ] {
        let err = fetch_jwt(&agent, audience, id).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{audience:?} {id:?}");
    }

    // Someone else's identity is not handed out.
    let err = fetch_jwt(&agent, &["a"], "spiffe://example.org/other")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = fetch_jwt(&agent, &["a"], "spiffe://example.org/nobody")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(agent.minter.calls(), 0);
}

#[tokio::test]
async fn caller_without_identity_gets_no_identity_issued_for_jwt() {
    let ca = TestCa::new();
    let other = entry("e1", "/other", "unix:uid:4294967294", "");
    let agent = start(snapshot(&ca, vec![(other, None)])).await;
    let err = fetch_jwt(&agent, &["a"], "").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");
    let err = agent
        .client
        .clone()
        .fetch_jwt_bundles(crate::cli::client::request(JwtBundlesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");
}

#[tokio::test]
async fn workload_gets_one_jwt_svid_per_identity_or_the_one_it_asks_for() {
    let ca = TestCa::new();
    let agent = start_jwt_agent(&ca, Duration::ZERO).await;
    let all = fetch_jwt(&agent, &["svc"], "").await.unwrap();
    let ids: Vec<(&str, &str)> = all
        .svids
        .iter()
        .map(|s| (s.spiffe_id.as_str(), s.hint.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("spiffe://example.org/alpha", ""),
            ("spiffe://example.org/me", "internal")
        ],
        "same order as the X.509-SVIDs, hints included"
    );
    for svid in &all.svids {
        let v = validate(&agent, "svc", &svid.svid).await.unwrap();
        assert_eq!(v.spiffe_id, svid.spiffe_id);
    }

    let one = fetch_jwt(&agent, &["svc"], "spiffe://example.org/me")
        .await
        .unwrap();
    assert_eq!(one.svids.len(), 1);
    assert_eq!(one.svids[0].spiffe_id, "spiffe://example.org/me");
    assert_eq!(one.svids[0].svid, all.svids[1].svid, "served from cache");
    assert_eq!(agent.minter.calls(), 2);
}

#[tokio::test]
async fn concurrent_identical_jwt_requests_share_one_mint() {
    let ca = TestCa::new();
    let agent = start_jwt_agent(&ca, Duration::from_millis(300)).await;
    let calls = (0..8).map(|_| {
        let agent = &agent;
        async move { fetch_jwt(agent, &["a", "b"], "spiffe://example.org/me").await }
    });
    let results = futures::future::join_all(calls).await;
    let tokens: HashSet<String> = results
        .into_iter()
        .map(|r| r.unwrap().svids[0].svid.clone())
        .collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(agent.minter.calls(), 1);
}

#[tokio::test]
async fn server_down_and_nothing_cached_is_unavailable() {
    let ca = TestCa::new();
    let agent = start_jwt_agent(&ca, Duration::ZERO).await;
    agent.minter.set_unreachable(true);
    let err = fetch_jwt(&agent, &["a"], "").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test]
async fn jwt_bundles_stream_is_a_jwks_per_trust_domain_and_follows_changes() {
    let ca = TestCa::new();
    let me = entry("e1", "/me", &my_uid_selector(), "");
    let agent = start(snapshot(&ca, vec![(me.clone(), None)])).await;
    let mut stream = agent
        .client
        .clone()
        .fetch_jwt_bundles(crate::cli::client::request(JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    assert_eq!(msg.bundles.len(), 1);
    let doc: serde_json::Value =
        serde_json::from_slice(&msg.bundles["spiffe://example.org"]).unwrap();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], "k1");
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["use"], "jwt-svid");
    assert!(doc.get("spiffe_sequence").is_none(), "a plain JWKS");
    let jwk: signet_core::jwt::Jwk = serde_json::from_value(keys[0].clone()).unwrap();
    assert_eq!(JwtPublicKey::from_jwk(&jwk).unwrap(), ca.jwt.public_key());

    // The same state is not re-sent; a new key is.
    agent
        .cache
        .send_replace(snapshot(&ca, vec![(me.clone(), None)]));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stream.message())
            .await
            .is_err(),
        "unchanged state not re-sent"
    );
    let (k2, _) = JwtSigner::generate("k2".into()).unwrap();
    let mut snap = (*snapshot(&ca, vec![(me, None)])).clone();
    let mut bundles = (*snap.jwt_bundles).clone();
    bundles
        .get_mut(&td())
        .unwrap()
        .insert("k2".into(), k2.public_key());
    snap.jwt_bundles = Arc::new(bundles);
    agent.cache.send_replace(Arc::new(snap));
    let msg = stream.message().await.unwrap().unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&msg.bundles["spiffe://example.org"]).unwrap();
    let kids: Vec<&str> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec!["k1", "k2"]);
}

fn now() -> i64 {
    unix_seconds(SystemClock.now())
}

fn b64(s: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// A token with this header and claims, signed with the CA's JWT key.
fn signed(ca: &TestCa, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let rng = ring::rand::SystemRandom::new();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &ca.jwt_pkcs8, &rng).unwrap();
    let sig = key.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", b64(sig.as_ref()))
}

fn claims(sub: &str, aud: &str, exp: i64, extra: &str) -> String {
    format!(
        r#"{{"sub":"{sub}","aud":{aud},"exp":{exp},"iat":{}{extra}}}"#,
        now() - 10
    )
}

const ES256: &str = r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#;
const ME_ID: &str = "spiffe://example.org/me";

#[tokio::test]
async fn valid_jwt_svid_yields_its_spiffe_id_and_claims_with_aud_as_a_list() {
    let ca = TestCa::new();
    // No identity for this caller: validating is open to any caller.
    let agent = start(snapshot(&ca, vec![])).await;
    let token = signed(
        &ca,
        ES256,
        &claims(ME_ID, r#""svc""#, now() + 300, r#","jti":"j1""#),
    );
    let v = validate(&agent, "svc", &token).await.unwrap();
    assert_eq!(v.spiffe_id, ME_ID);
    let fields = v.claims.unwrap().fields;
    assert_eq!(fields["sub"].kind, Some(Kind::StringValue(ME_ID.into())));
    assert_eq!(fields["jti"].kind, Some(Kind::StringValue("j1".into())));
    assert!(matches!(fields["exp"].kind, Some(Kind::NumberValue(_))));
    let Some(Kind::ListValue(aud)) = &fields["aud"].kind else {
        panic!("aud must be a list: {:?}", fields["aud"]);
    };
    assert_eq!(aud.values.len(), 1);
    assert_eq!(aud.values[0].kind, Some(Kind::StringValue("svc".into())));

    // A token minted the way the server mints validates too.
    let sub = SpiffeId::parse(ME_ID).unwrap();
    let minted = mint_jwt_svid(
        &ca.jwt,
        &MintParams {
            subject: &sub,
            audience: &["a".into(), "b".into()],
            issued_at: SystemClock.now(),
            expires_at: SystemClock.now() + Duration::from_secs(60),
            jti: "j2".into(),
            issuer: None,
        },
    )
    .unwrap();
    assert_eq!(
        validate(&agent, "b", &minted).await.unwrap().spiffe_id,
        ME_ID
    );
}

#[tokio::test]
async fn every_bad_jwt_svid_is_refused_with_invalid_argument_and_its_reason() {
    let ca = TestCa::new();
    let agent = start(snapshot(&ca, vec![])).await;
    let ok_claims = claims(ME_ID, r#"["svc"]"#, now() + 300, "");
    let good = signed(&ca, ES256, &ok_claims);
    let tampered = tamper_signature(&good);
    let pubkey = match ca.jwt.public_key() {
        JwtPublicKey::P256(p) => p,
        _ => unreachable!(),
    };
    let hs256_input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#),
        b64(ok_claims.as_bytes())
    );
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &pubkey);
    let hs256 = format!(
        "{hs256_input}.{}",
        b64(ring::hmac::sign(&hmac_key, hs256_input.as_bytes()).as_ref())
    );
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","kid":"k1"}"#),
        b64(ok_claims.as_bytes())
    );

    let cases: Vec<(&str, String, JwtError)> = vec![
        ("alg none", alg_none, JwtError::Alg("none".into())),
        (
            "HS256 with the public key",
            hs256,
            JwtError::Alg("HS256".into()),
        ),
        ("tampered signature", tampered, JwtError::BadSignature),
        (
            "unknown kid",
            signed(&ca, r#"{"alg":"ES256","kid":"k9"}"#, &ok_claims),
            JwtError::UnknownKid("k9".into(), "example.org".into()),
        ),
        (
            "no kid",
            signed(&ca, r#"{"alg":"ES256","typ":"JWT"}"#, &ok_claims),
            JwtError::MissingKid,
        ),
        (
            "expired",
            signed(&ca, ES256, &claims(ME_ID, r#"["svc"]"#, now() - 120, "")),
            JwtError::Expired,
        ),
        (
            "nbf in the future",
            signed(
                &ca,
                ES256,
                &claims(
                    ME_ID,
                    r#"["svc"]"#,
                    now() + 600,
                    &format!(r#","nbf":{}"#, now() + 300),
                ),
            ),
            JwtError::NotYetValid,
        ),
        (
            "audience not contained",
            signed(
                &ca,
                ES256,
                &claims(ME_ID, r#"["other","more"]"#, now() + 300, ""),
            ),
            JwtError::AudienceMismatch("svc".into(), vec!["other".into(), "more".into()]),
        ),
        (
            "sub in a trust domain without a bundle",
            signed(
                &ca,
                ES256,
                &claims("spiffe://elsewhere.org/x", r#"["svc"]"#, now() + 300, ""),
            ),
            JwtError::NoBundle("elsewhere.org".into()),
        ),
        (
            "unknown header field",
            signed(
                &ca,
                r#"{"alg":"ES256","kid":"k1","jku":"https://evil"}"#,
                &ok_claims,
            ),
            JwtError::UnknownHeader("jku".into()),
        ),
        ("two parts", "abc.def".into(), JwtError::PartCount(2)),
        ("four parts", format!("{good}.x"), JwtError::PartCount(4)),
        (
            "bad base64",
            format!("!!!.{}.sig", b64(ok_claims.as_bytes())),
            JwtError::Base64("header"),
        ),
        (
            "bad JSON",
            format!("{}.{}.", b64(ES256.as_bytes()), b64(b"{not json")),
            JwtError::Json("payload"),
        ),
    ];
    for (name, token, want) in cases {
        let err = validate(&agent, "svc", &token).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}");
        assert_eq!(err.message(), want.to_string(), "{name}");
    }

    // Empty request fields.
    let err = validate(&agent, "", &good).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "audience must be specified");
    let err = validate(&agent, "svc", "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "svid must be specified");
    // And the header rule holds here too.
    let err = agent
        .client
        .clone()
        .validate_jwtsvid(Request::new(ValidateJwtsvidRequest {
            audience: "svc".into(),
            svid: good.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(validate(&agent, "svc", &good).await.is_ok());
}

/// Changes the first signature character: every bit of it is significant,
/// unlike the last one, whose low bits are base64 padding.
fn tamper_signature(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig: Vec<char> = sig.chars().collect();
    sig[0] = if sig[0] == 'A' { 'B' } else { 'A' };
    format!("{input}.{}", sig.into_iter().collect::<String>())
}
