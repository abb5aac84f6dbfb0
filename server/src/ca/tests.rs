use signet_core::x509::validate_x509_svid;
use signet_core::ManualClock;

use super::*;

fn settings(ttl: Duration) -> CaSettings {
    CaSettings {
        trust_domain: TrustDomain::new("example.org").unwrap(),
        ca_ttl: ttl,
        default_svid_ttl: Duration::from_secs(3600),
        backdate: Duration::from_secs(30),
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
    assert!(renewed.bundle().sequence > ca.bundle().sequence);
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
