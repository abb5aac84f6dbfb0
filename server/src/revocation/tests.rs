use std::sync::Arc;
use std::time::Duration;

use signet_core::{ManualClock, SpiffeId, TrustDomain};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::*;
use crate::ca::{CaSettings, MemoryKeys};
use crate::datastore::{DataStore, SqliteDataStore};

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A server's CA and revocation keeper on `ds` (shared: the servers of one
/// datastore, as on PostgreSQL).
async fn server(
    id: &str,
    ds: &Arc<dyn DataStore>,
    bus: &ChangeBus,
    clock: &Arc<ManualClock>,
) -> (Arc<CertificateAuthority>, Revocations) {
    let settings = CaSettings {
        trust_domain: TrustDomain::new("example.org").unwrap(),
        server_id: id.into(),
        upstream: None,
        ca_ttl: Duration::from_secs(3600),
        default_svid_ttl: Duration::from_secs(600),
        default_jwt_svid_ttl: Duration::from_secs(300),
        backdate: Duration::from_secs(30),
        schedule: Default::default(),
        jwt_key_type: Default::default(),
        jwt_issuer: None,
    };
    let keys = Arc::new(MemoryKeys::default());
    let (ca, _) = CertificateAuthority::start(settings, clock.clone(), ds.clone(), keys)
        .await
        .unwrap();
    let ca = Arc::new(ca);
    ca.follow(bus);
    let (revs, _) = Revocations::start(ds.clone(), ca.clone(), bus, id.into())
        .await
        .unwrap();
    (ca, revs)
}

fn serials(der: &[u8]) -> Vec<String> {
    let (_, crl) = CertificateRevocationList::from_der(der).unwrap();
    crl.iter_revoked_certificates()
        .map(|c| hex::encode(c.raw_serial()))
        .collect()
}

#[tokio::test]
async fn crl_lists_revoked_serials_verifies_with_the_ca_key_and_entries_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let ds: Arc<dyn DataStore> = Arc::new(
        SqliteDataStore::open(&dir.path().join("ds.sqlite3"))
            .await
            .unwrap(),
    );
    let bus = ChangeBus::start(ds.clone()).await.unwrap();
    let (ca, revs) = server("s1", &ds, &bus, &clock).await;
    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let svid = ca.issue_x509_svid(&id, &key, &[], None).unwrap();
    let now = unix_seconds(start());
    let exp = unix_seconds(svid.not_after);
    ds.record_x509(&svid.serial_hex, &id, &svid.authority_id, exp)
        .await
        .unwrap();
    let minted = ca.mint_jwt_svid(&id, &["a".into()], None).unwrap();
    ds.record_jwt(&minted.jti, &id, &minted.kid, minted.expires_at())
        .await
        .unwrap();

    // Unknown credentials are NotFound.
    assert!(matches!(
        ds.revoke(RevokedKind::X509, "abcd", "x", now).await,
        Err(DataStoreError::NotFound(_))
    ));
    let r = ds
        .revoke(RevokedKind::X509, &svid.serial_hex, "key compromise", now)
        .await
        .unwrap();
    assert_eq!(r.expires_at, exp);
    assert_eq!(r.authority_id, &*svid.authority_id);
    ds.revoke(RevokedKind::Jwt, &minted.jti, "leaked", now)
        .await
        .unwrap();

    // (The keeper may have rebuilt on hearing the revocation already.)
    revs.refresh().await.unwrap();
    assert!(revs.is_x509_revoked(&svid.serial_hex));
    let crls = revs.crls();
    assert_eq!(crls.len(), 1);
    assert_eq!(serials(&crls[0]), vec![svid.serial_hex.clone()]);
    let (_, crl) = CertificateRevocationList::from_der(&crls[0]).unwrap();
    let ca_der = ca.bundle().x509_authorities[0].clone();
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    crl.verify_signature(ca_cert.public_key()).unwrap();
    assert!(crl.crl_number().is_some());
    // Nothing new to list: not signed again.
    assert!(!revs.refresh().await.unwrap());

    // Both revocations expire with their credentials and are pruned.
    assert_eq!(ds.revocations(now).await.unwrap().len(), 2);
    assert_eq!(ds.prune_expired(minted.expires_at()).await.unwrap(), 1);
    assert_eq!(ds.prune_expired(exp).await.unwrap(), 1);
    assert!(ds.revocations(exp).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(700));
    revs.refresh().await.unwrap();
    assert!(revs.crls().is_empty());
    assert!(!revs.is_x509_revoked(&svid.serial_hex));
}

#[tokio::test]
async fn each_server_signs_its_own_cas_crl_and_every_server_serves_all() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let ds: Arc<dyn DataStore> = Arc::new(
        SqliteDataStore::open(&dir.path().join("ds.sqlite3"))
            .await
            .unwrap(),
    );
    let bus = ChangeBus::start(ds.clone()).await.unwrap();
    let (ca_a, revs_a) = server("a", &ds, &bus, &clock).await;
    let (ca_b, revs_b) = server("b", &ds, &bus, &clock).await;
    // Each server's bundle holds both CAs.
    let (mut rx, _) = bus.subscribe();
    for ca in [&ca_a, &ca_b] {
        let mut published = ca.subscribe();
        tokio::time::timeout(
            Duration::from_secs(5),
            published.wait_for(|s| s.bundle.x509_authorities.len() == 2),
        )
        .await
        .unwrap()
        .unwrap();
    }
    // B signed it; the revocation is made through A.
    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let svid = ca_b.issue_x509_svid(&id, &key, &[], None).unwrap();
    ds.record_x509(
        &svid.serial_hex,
        &id,
        &svid.authority_id,
        unix_seconds(svid.not_after),
    )
    .await
    .unwrap();
    ds.revoke(
        RevokedKind::X509,
        &svid.serial_hex,
        "stolen",
        unix_seconds(start()),
    )
    .await
    .unwrap();
    // A cannot sign B's CRL; B's keeper hears the revocation and does.
    revs_a.refresh().await.unwrap();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if event.change == Change::CrlsChanged {
            revs_a.caught_up(event.revision).await;
            revs_b.caught_up(event.revision).await;
            break;
        }
    }
    for revs in [&revs_a, &revs_b] {
        let crls = revs.crls();
        assert_eq!(
            crls.len(),
            1,
            "one CRL: B's CA is the only one with revocations"
        );
        assert_eq!(serials(&crls[0]), vec![svid.serial_hex.clone()]);
        assert!(revs.is_x509_revoked(&svid.serial_hex));
    }
    let stored = ds.crls().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].server_id, "b",
        "signed by the server whose CA it is"
    );
    let b_ca = ca_b.own(AuthorityKind::X509)[0]
        .certificate
        .clone()
        .unwrap();
    let (_, b_cert) = X509Certificate::from_der(&b_ca).unwrap();
    let crls = revs_a.crls();
    let (_, crl) = CertificateRevocationList::from_der(&crls[0]).unwrap();
    crl.verify_signature(b_cert.public_key()).unwrap();
}

#[test]
fn serials_are_normalised() {
    assert_eq!(normalize_serial("AB:cd:01").as_deref(), Some("abcd01"));
    assert_eq!(normalize_serial("abc").as_deref(), Some("0abc"));
    assert_eq!(normalize_serial("xyz"), None);
}
