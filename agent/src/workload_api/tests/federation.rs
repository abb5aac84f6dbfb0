//! Federation on the Workload API, fed by hand-built snapshots: each caller
//! gets the bundles of the trust domains its entries federate with (and
//! only those the agent holds), and validates JWT-SVIDs of those alone.

use signet_core::bundle::{Bundle, JwtAuthority};
use signet_core::jwt::{mint_jwt_svid, MintParams};
use signet_proto::workload::{JwtBundlesRequest, ValidateJwtsvidRequest, X509BundlesRequest};

use super::*;
use crate::cache::FederatedBundles;

/// Another trust domain: its CA and its JWT signing key.
pub(super) struct Peer {
    pub td: TrustDomain,
    pub cert: Vec<u8>,
    pub jwt: JwtSigner,
}

impl Peer {
    pub fn new(trust_domain: &str, kid: &str) -> Self {
        let td = TrustDomain::new(trust_domain).unwrap();
        let key = KeyPair::generate().unwrap();
        let now = SystemClock.now();
        let cert = signet_core::x509::ca_params(
            &td,
            now - Duration::from_secs(60),
            now + Duration::from_secs(3600),
        )
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec();
        let (jwt, _) = JwtSigner::generate(kid.into()).unwrap();
        Self { td, cert, jwt }
    }

    /// Its bundle: its CA and JWT key, then `more`'s (a rotation).
    pub fn bundle(&self, more: &[&Peer], sequence: u64) -> Bundle {
        let all = || std::iter::once(self).chain(more.iter().copied());
        Bundle {
            trust_domain: self.td.clone(),
            x509_authorities: all().map(|p| p.cert.clone()).collect(),
            jwt_authorities: all()
                .map(|p| JwtAuthority {
                    kid: p.jwt.kid().into(),
                    jwk: p.jwt.jwk(),
                    public_key: p.jwt.public_key(),
                    expires_at: 0,
                })
                .collect(),
            sequence,
        }
    }

    /// A JWT-SVID for `spiffe://<td>/svc`, for audience "svc".
    pub fn token(&self) -> String {
        let sub = self.td.id("/svc").unwrap();
        let now = SystemClock.now();
        mint_jwt_svid(
            &self.jwt,
            &MintParams {
                subject: &sub,
                audience: &["svc".into()],
                issued_at: now,
                expires_at: now + Duration::from_secs(60),
                jti: "peer-1".into(),
                issuer: None,
            },
        )
        .unwrap()
    }
}

pub(super) fn federating(mut e: RegistrationEntry, with: &[&str]) -> RegistrationEntry {
    e.federates_with = with.iter().map(|t| TrustDomain::new(t).unwrap()).collect();
    e
}

pub(super) fn with_federated(snapshot: Arc<Snapshot>, bundles: Vec<Bundle>) -> Arc<Snapshot> {
    let held: FederatedBundles = bundles
        .into_iter()
        .map(|b| (b.trust_domain.clone(), Arc::new(b)))
        .collect();
    Arc::new(Snapshot {
        federated_bundles: Arc::new(held),
        ..(*snapshot).clone()
    })
}

pub(super) fn jwks_kids(doc: &[u8]) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_slice(doc).unwrap();
    assert!(doc.get("spiffe_sequence").is_none(), "a plain JWKS");
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["use"], "jwt-svid");
            k["kid"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_workload_gets_the_bundles_of_the_trust_domains_its_entry_federates_with() {
    let ca = TestCa::new();
    let (b, c) = (Peer::new("b.test", "b1"), Peer::new("c.test", "c1"));
    let sel = my_uid_selector();
    // The caller federates with b.test (held) and d.test (not held); c.test
    // is held for another workload only.
    let agent = start(with_federated(
        snapshot(
            &ca,
            vec![
                (
                    federating(entry("e1", "/me", &sel, ""), &["b.test", "d.test"]),
                    Some(ca.issue("/me", Duration::from_secs(600))),
                ),
                (
                    entry("e2", "/plain", &sel, ""),
                    Some(ca.issue("/plain", Duration::from_secs(600))),
                ),
                (
                    federating(
                        entry("e3", "/other", "unix:uid:4294967294", ""),
                        &["c.test"],
                    ),
                    Some(ca.issue("/other", Duration::from_secs(600))),
                ),
            ],
        ),
        vec![b.bundle(&[], 1), c.bundle(&[], 1)],
    ))
    .await;

    let msg = next(&mut fetch(&agent).await.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.svids.len(), 2);
    assert_eq!(
        msg.federated_bundles,
        [("spiffe://b.test".to_string(), b.cert.clone())].into()
    );
    for svid in &msg.svids {
        assert_eq!(svid.bundle, ca.cert, "each SVID's bundle is the own one");
    }

    let mut client = agent.client.clone();
    let msg = next(
        &mut client
            .fetch_x509_bundles(crate::cli::client::request(X509BundlesRequest {}))
            .await
            .unwrap()
            .into_inner(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        msg.bundles,
        [
            ("spiffe://example.org".to_string(), ca.cert.clone()),
            ("spiffe://b.test".to_string(), b.cert.clone()),
        ]
        .into()
    );

    let msg = next(
        &mut client
            .fetch_jwt_bundles(crate::cli::client::request(JwtBundlesRequest {}))
            .await
            .unwrap()
            .into_inner(),
    )
    .await
    .unwrap()
    .unwrap();
    let mut tds: Vec<&str> = msg.bundles.keys().map(String::as_str).collect();
    tds.sort();
    assert_eq!(tds, ["spiffe://b.test", "spiffe://example.org"]);
    assert_eq!(jwks_kids(&msg.bundles["spiffe://b.test"]), ["b1"]);
    assert_eq!(jwks_kids(&msg.bundles["spiffe://example.org"]), ["k1"]);
}

async fn validate(agent: &Agent, svid: &str) -> Result<String, Status> {
    agent
        .client
        .clone()
        .validate_jwtsvid(crate::cli::client::request(ValidateJwtsvidRequest {
            audience: "svc".into(),
            svid: svid.into(),
        }))
        .await
        .map(|r| r.into_inner().spiffe_id)
}

#[tokio::test]
async fn a_jwt_svid_of_a_federated_trust_domain_validates_and_one_of_another_does_not() {
    let ca = TestCa::new();
    let (b, c, d) = (
        Peer::new("b.test", "b1"),
        Peer::new("c.test", "c1"),
        Peer::new("d.test", "d1"),
    );
    let me = federating(
        entry("e1", "/me", &my_uid_selector(), ""),
        &["b.test", "d.test"],
    );
    let held = vec![b.bundle(&[], 1), c.bundle(&[], 1)];
    let agent = start(with_federated(
        snapshot(&ca, vec![(me.clone(), None)]),
        held.clone(),
    ))
    .await;

    assert_eq!(
        validate(&agent, &b.token()).await.unwrap(),
        "spiffe://b.test/svc"
    );

    let refused = validate(&agent, &c.token()).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "trust domain \"c.test\" is not one the caller's entries federate with"
    );
    let refused = validate(&agent, &d.token()).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.message(), "no bundle for trust domain \"d.test\"");

    // A b.test subject signed with c.test's key: bundles are never merged.
    let forged = {
        let sub = b.td.id("/svc").unwrap();
        let now = SystemClock.now();
        mint_jwt_svid(
            &c.jwt,
            &MintParams {
                subject: &sub,
                audience: &["svc".into()],
                issued_at: now,
                expires_at: now + Duration::from_secs(60),
                jti: "forged".into(),
                issuer: None,
            },
        )
        .unwrap()
    };
    let refused = validate(&agent, &forged).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "key id \"c1\" not found in the bundle of trust domain \"b.test\""
    );

    // Once the caller's entry no longer federates with b.test, neither
    // does the caller.
    agent.cache.send_replace(with_federated(
        snapshot(&ca, vec![(federating(me, &["d.test"]), None)]),
        held,
    ));
    let refused = validate(&agent, &b.token()).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "trust domain \"b.test\" is not one the caller's entries federate with"
    );
}

#[tokio::test]
async fn a_caller_without_identity_gets_no_federated_bundle_and_validates_no_federated_token() {
    let ca = TestCa::new();
    let b = Peer::new("b.test", "b1");
    let other = federating(
        entry("e1", "/other", "unix:uid:4294967294", ""),
        &["b.test"],
    );
    let agent = start(with_federated(
        snapshot(&ca, vec![(other, None)]),
        vec![b.bundle(&[], 1)],
    ))
    .await;
    let err = agent
        .client
        .clone()
        .fetch_x509_bundles(crate::cli::client::request(X509BundlesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");
    let err = agent
        .client
        .clone()
        .fetch_jwt_bundles(crate::cli::client::request(JwtBundlesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let refused = validate(&agent, &b.token()).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "trust domain \"b.test\" is not one the caller's entries federate with"
    );
}
