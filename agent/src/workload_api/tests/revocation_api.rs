//! What revocation looks like on the Workload API: CRLs in the `crl`
//! fields, revoked jtis refused by ValidateJWTSVID, and an agent cut off by
//! the server serving nothing.

use signet_core::jwt::{mint_jwt_svid, MintParams};
use signet_core::{Clock, SystemClock};
use signet_proto::workload::{ValidateJwtsvidRequest, X509BundlesRequest};

use super::*;
use crate::cache::Revocations;

fn with_crls(snapshot: &Snapshot, crls: Vec<Vec<u8>>) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        crls: Arc::new(crls),
        ..snapshot.clone()
    })
}

#[tokio::test]
async fn crls_from_the_server_reach_the_crl_fields_of_both_x509_streams() {
    let ca = TestCa::new();
    let sel = my_uid_selector();
    let base = snapshot(
        &ca,
        vec![(
            entry("e1", "/me", &sel, ""),
            Some(ca.issue("/me", Duration::from_secs(300))),
        )],
    );
    let agent = start(base.clone()).await;
    let mut svids = fetch(&agent).await.unwrap();
    assert!(next(&mut svids).await.unwrap().unwrap().crl.is_empty());
    let mut client = agent.client.clone();
    let mut bundles = client
        .fetch_x509_bundles(crate::cli::client::request(X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(bundles.message().await.unwrap().unwrap().crl.is_empty());

    agent
        .cache
        .send_replace(with_crls(&base, vec![b"crl-1".to_vec(), b"crl-2".to_vec()]));
    let x509 = next(&mut svids).await.unwrap().unwrap();
    assert_eq!(x509.crl, vec![b"crl-1".to_vec(), b"crl-2".to_vec()]);
    assert_eq!(x509.svids.len(), 1, "full state in every message");
    let b = tokio::time::timeout(Duration::from_secs(5), bundles.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(b.crl, vec![b"crl-1".to_vec(), b"crl-2".to_vec()]);
}

#[tokio::test]
async fn revoked_jti_is_refused_by_validate_jwt_svid() {
    let ca = TestCa::new();
    let base = snapshot(&ca, vec![]);
    let agent = start(base.clone()).await;
    let sub = SpiffeId::parse("spiffe://example.org/me").unwrap();
    let mint = |jti: &str| {
        mint_jwt_svid(
            &ca.jwt,
            &MintParams {
                subject: &sub,
                audience: &["svc".into()],
                issued_at: SystemClock.now(),
                expires_at: SystemClock.now() + Duration::from_secs(60),
                jti: jti.into(),
                issuer: None,
            },
        )
        .unwrap()
    };
    let (revoked, other) = (mint("j-revoked"), mint("j-other"));
    let validate = |token: String| {
        let mut client = agent.client.clone();
        async move {
            client
                .validate_jwtsvid(crate::cli::client::request(ValidateJwtsvidRequest {
                    audience: "svc".into(),
                    svid: token,
                }))
                .await
        }
    };
    validate(revoked.clone())
        .await
        .expect("valid before revocation");

    let mut revocations = Revocations::default();
    revocations.jwt_ids.insert(
        "j-revoked".into(),
        SystemClock.now() + Duration::from_secs(60),
    );
    agent.cache.send_replace(Arc::new(Snapshot {
        revocations: Arc::new(revocations),
        ..(*base).clone()
    }));
    let err = validate(revoked).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "token has been revoked");
    validate(other).await.expect("other tokens stay valid");
}

#[tokio::test]
async fn revocation_expires_with_the_credential() {
    let mut r = Revocations::default();
    let now = SystemClock.now();
    r.jwt_ids.insert("j".into(), now + Duration::from_secs(10));
    r.x509_serials
        .insert("ab01".into(), now + Duration::from_secs(10));
    assert!(r.is_jti_revoked("j", now));
    assert!(r.is_serial_revoked("00ab01", now), "leading zeros ignored");
    assert!(!r.prune(now));
    let later = now + Duration::from_secs(10);
    assert!(!r.is_jti_revoked("j", later));
    assert!(r.prune(later));
    assert!(r.jwt_ids.is_empty() && r.x509_serials.is_empty());
}

#[tokio::test]
async fn cut_off_agent_ends_streams_and_answers_no_identity_issued() {
    let ca = TestCa::new();
    let sel = my_uid_selector();
    let base = snapshot(
        &ca,
        vec![(
            entry("e1", "/me", &sel, ""),
            Some(ca.issue("/me", Duration::from_secs(300))),
        )],
    );
    let agent = start(base.clone()).await;
    let mut svids = fetch(&agent).await.unwrap();
    assert_eq!(next(&mut svids).await.unwrap().unwrap().svids.len(), 1);

    // What the cache manager publishes once the server banned the agent.
    agent.cache.send_replace(Arc::new(Snapshot {
        entries: BTreeMap::new(),
        ..(*base).clone()
    }));
    let end = next(&mut svids).await.unwrap_err();
    assert_eq!(end.code(), Code::PermissionDenied);
    assert_eq!(end.message(), "no identity issued");
    let again = fetch(&agent).await.unwrap_err();
    assert_eq!(again.message(), "no identity issued");
    let jwt = agent
        .client
        .clone()
        .fetch_jwtsvid(crate::cli::client::request(
            signet_proto::workload::JwtsvidRequest {
                audience: vec!["svc".into()],
                spiffe_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(jwt.code(), Code::PermissionDenied);
}
