use signet_core::x509::validate_x509_svid;
use signet_core::ManualClock;

use super::*;

fn settings(ttl: Duration) -> CaSettings {
    CaSettings {
        trust_domain: TrustDomain::new("example.org").unwrap(),
        ca_ttl: ttl,
        default_svid_ttl: Duration::from_secs(3600),
        default_jwt_svid_ttl: Duration::from_secs(300),
        backdate: Duration::from_secs(30),
        schedule: Default::default(),
    }
}

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[test]
fn ca_is_created_once_and_reused_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let (ca, created) = CertificateAuthority::load_or_create(
        dir.path(),
        settings(Duration::from_secs(86400)),
        clock.clone(),
    )
    .unwrap();
    assert!(created);
    let (again, created) = CertificateAuthority::load_or_create(
        dir.path(),
        settings(Duration::from_secs(86400)),
        clock.clone(),
    )
    .unwrap();
    assert!(!created);
    assert_eq!(ca.bundle(), again.bundle());

    clock.advance(Duration::from_secs(86401));
    let (renewed, created) = CertificateAuthority::load_or_create(
        dir.path(),
        settings(Duration::from_secs(86400)),
        clock,
    )
    .unwrap();
    assert!(created, "an expired CA is replaced");
    assert_ne!(renewed.bundle().fingerprint(), ca.bundle().fingerprint());
    // The JWT key lives as long as a CA: replaced too.
    assert_eq!(renewed.bundle().jwt_authorities.len(), 1);
    assert_ne!(
        renewed.bundle().jwt_authorities[0].kid,
        ca.bundle().jwt_authorities[0].kid
    );
}

#[test]
fn jwt_svid_validates_against_the_bundle_and_ttl_is_capped() {
    use signet_core::jwt::{parse_unverified, validate_jwt_svid, JwtBundles, ValidationOptions};

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let (ca, _) = CertificateAuthority::load_or_create(
        dir.path(),
        settings(Duration::from_secs(600)),
        clock.clone(),
    )
    .unwrap();
    let bundle = ca.bundle();
    assert_eq!(bundle.jwt_authorities.len(), 1);
    let auth = &bundle.jwt_authorities[0];
    assert_eq!(auth.jwk.use_.as_deref(), Some("jwt-svid"));
    assert_eq!(auth.jwk.kid.as_deref(), Some(auth.kid.as_str()));
    assert_eq!(auth.expires_at, unix_seconds(ca.not_after()));

    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let aud = vec!["a".to_owned(), "b".to_owned()];
    let minted = ca.mint_jwt_svid(&id, &aud, None).unwrap();
    assert_eq!(minted.issued_at, unix_seconds(start()));
    assert_eq!(minted.expires_at - minted.issued_at, 300);

    let mut bundles = JwtBundles::new();
    bundles.insert(
        id.trust_domain().clone(),
        [(
            auth.kid.clone(),
            signet_core::jwt::JwtPublicKey::from_jwk(&auth.jwk).unwrap(),
        )]
        .into_iter()
        .collect(),
    );
    let opts = ValidationOptions {
        now: start(),
        leeway: Duration::from_secs(0),
    };
    let v = validate_jwt_svid(&minted.token, "b", &bundles, opts).unwrap();
    assert_eq!(v.spiffe_id, id);
    assert_eq!(v.kid, auth.kid);
    let (header, claims) = parse_unverified(&minted.token).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(claims["aud"], serde_json::json!(["a", "b"]));
    let again = ca.mint_jwt_svid(&id, &aud, None).unwrap();
    let (_, claims2) = parse_unverified(&again.token).unwrap();
    assert_ne!(claims["jti"], claims2["jti"]);

    // Per-entry TTL, then the CA's time left caps it.
    let short = ca
        .mint_jwt_svid(&id, &aud, Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(short.expires_at - short.issued_at, 30);
    clock.advance(Duration::from_secs(500));
    let capped = ca
        .mint_jwt_svid(&id, &aud, Some(Duration::from_secs(3600)))
        .unwrap();
    assert_eq!(capped.expires_at, unix_seconds(ca.not_after()));
    clock.advance(Duration::from_secs(200));
    assert_eq!(
        ca.mint_jwt_svid(&id, &aud, None).unwrap_err(),
        CaError::Expired
    );
}

#[test]
fn svid_ttl_is_capped_by_ca_time_left_and_back_dated() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let (ca, _) = CertificateAuthority::load_or_create(
        dir.path(),
        settings(Duration::from_secs(600)),
        clock.clone(),
    )
    .unwrap();
    let key = KeyPair::generate().unwrap();
    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let svid = ca
        .issue_x509_svid(&id, &key, &["web.local".into()], None)
        .unwrap();
    assert_eq!(svid.not_after, start() + Duration::from_secs(600));
    let info = cert_info(&svid.chain[0]).unwrap();
    assert_eq!(info.not_before, start() - Duration::from_secs(30));
    assert_eq!(info.not_after, svid.not_after, "as the certificate says");
    assert_eq!(info.serial_hex, svid.serial_hex, "as the certificate says");
    let got = validate_x509_svid(&svid.chain, &ca.bundle().x509_authorities, start()).unwrap();
    assert_eq!(got, id);

    let short = ca
        .issue_x509_svid(&id, &key, &[], Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(short.not_after, start() + Duration::from_secs(60));

    clock.advance(Duration::from_secs(700));
    assert_eq!(
        ca.issue_x509_svid(&id, &key, &[], None).unwrap_err(),
        CaError::Expired
    );
}

#[test]
fn scheduled_rotation_taint_and_revoke_rules_and_state_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let ttl = Duration::from_secs(600);
    let load = || {
        CertificateAuthority::load_or_create(dir.path(), settings(ttl), clock.clone())
            .unwrap()
            .0
    };
    let ca = load();
    // Activating with nothing prepared is refused.
    assert!(matches!(
        ca.activate(AuthorityKind::X509).unwrap_err(),
        CaError::FailedPrecondition(_)
    ));
    let states = |ca: &CertificateAuthority, kind| {
        ca.list(kind)
            .into_iter()
            .map(|a| (a.id, a.state, a.tainted))
            .collect::<Vec<_>>()
    };
    let first = ca.list(AuthorityKind::X509)[0].id.clone();
    // X.509 life: 630 s (30 s back-dated); half-life at +285 s.
    clock.advance(Duration::from_secs(280));
    assert!(!ca.tick().unwrap());
    assert_eq!(ca.list(AuthorityKind::X509).len(), 1);
    clock.advance(Duration::from_secs(20));
    assert!(ca.tick().unwrap());
    let x = states(&ca, AuthorityKind::X509);
    assert_eq!(x.len(), 2);
    assert_eq!(x[1].1, AuthorityState::Prepared);
    let prepared = x[1].0.clone();
    // In the bundle before it signs anything; the active one still signs.
    assert_eq!(ca.bundle().x509_authorities.len(), 2);
    let key = KeyPair::generate().unwrap();
    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    assert_eq!(
        ca.issue_x509_svid(&id, &key, &[], None)
            .unwrap()
            .authority_id,
        first
    );
    assert_eq!(
        ca.list(AuthorityKind::Jwt)[1].state,
        AuthorityState::Prepared
    );

    // Taint/revoke rules.
    let err = ca.taint(AuthorityKind::X509, &first).unwrap_err();
    assert!(matches!(&err, CaError::FailedPrecondition(m) if m.contains("activate")));
    assert!(matches!(
        ca.revoke(AuthorityKind::X509, &prepared).unwrap_err(),
        CaError::FailedPrecondition(_)
    ));
    assert!(matches!(
        ca.taint(AuthorityKind::X509, "00").unwrap_err(),
        CaError::NotFound(_)
    ));

    // Restart: same authorities, same states.
    let before = states(&ca, AuthorityKind::X509);
    drop(ca);
    let ca = load();
    assert_eq!(states(&ca, AuthorityKind::X509), before);

    // Activation at 1/6 of the life left (630 * 0.1667 = 105 s before +600).
    clock.set(start() + Duration::from_secs(490));
    assert!(!ca.tick().unwrap());
    clock.set(start() + Duration::from_secs(496));
    assert!(ca.tick().unwrap());
    let x = states(&ca, AuthorityKind::X509);
    assert_eq!(x[0], (prepared.clone(), AuthorityState::Active, false));
    assert_eq!(x[1], (first.clone(), AuthorityState::Old, false));
    assert_eq!(
        ca.issue_x509_svid(&id, &key, &[], None)
            .unwrap()
            .authority_id,
        prepared
    );
    // The old one may now be tainted, then revoked: gone from the bundle.
    assert!(ca.taint(AuthorityKind::X509, &first).unwrap().tainted);
    assert_eq!(ca.tainted().0, vec![first.clone()]);
    drop(ca);
    let ca = load();
    assert_eq!(ca.tainted().0, vec![first.clone()]);
    ca.revoke(AuthorityKind::X509, &first).unwrap();
    assert_eq!(
        ca.bundle().x509_authorities.len(),
        1,
        "{:?}",
        states(&ca, AuthorityKind::X509)
    );
    assert!(ca.tainted().0.is_empty());

    // An old authority is dropped at its notAfter.
    ca.prepare(AuthorityKind::X509).unwrap();
    let newest = ca.activate(AuthorityKind::X509).unwrap();
    assert_eq!(ca.list(AuthorityKind::X509).len(), 2);
    let old_not_after = ca.list(AuthorityKind::X509)[1].not_after;
    clock.set(signet_core::clock::from_unix_seconds(old_not_after));
    assert!(ca.tick().unwrap());
    let x = ca.list(AuthorityKind::X509);
    let old_id = &prepared;
    assert!(x.iter().all(|a| &a.id != old_id), "{x:?}");
    assert_eq!(x[0].id, newest.id);
    assert_eq!(x[0].state, AuthorityState::Active);
}
