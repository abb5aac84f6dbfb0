use std::sync::Arc;
use std::time::Duration;

use signet_core::{ManualClock, SpiffeId, TrustDomain};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::*;
use crate::ca::CaSettings;
use crate::datastore::prelude::*;
use crate::datastore::SqliteDataStore;

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[tokio::test]
async fn crl_lists_revoked_serials_verifies_with_the_ca_key_and_entries_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let ca = crate::ca::for_tests(
        dir.path(),
        CaSettings {
            trust_domain: TrustDomain::new("example.org").unwrap(),
            ca_ttl: Duration::from_secs(3600),
            default_svid_ttl: Duration::from_secs(600),
            default_jwt_svid_ttl: Duration::from_secs(300),
            backdate: Duration::from_secs(30),
            schedule: Default::default(),
        },
        clock.clone(),
    )
    .await;
    let ds = SqliteDataStore::open(&dir.path().join("ds.sqlite3"))
        .await
        .unwrap();
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
    assert_eq!(r.authority_id, svid.authority_id);
    ds.revoke(RevokedKind::Jwt, &minted.jti, "leaked", now)
        .await
        .unwrap();

    let revs = Revocations::new();
    assert!(revs.refresh(&ds, &ca).await.unwrap());
    let crls = revs.crls();
    assert_eq!(crls.len(), 1);
    let (_, crl) = CertificateRevocationList::from_der(&crls[0]).unwrap();
    let serials: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|c| hex::encode(c.raw_serial()))
        .collect();
    assert_eq!(serials, vec![svid.serial_hex.clone()]);
    let ca_der = ca.bundle().x509_authorities[0].clone();
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    crl.verify_signature(ca_cert.public_key()).unwrap();
    assert!(crl.crl_number().is_some());

    // Both revocations expire with their credentials and are pruned.
    assert_eq!(ds.revocations(now).await.unwrap().len(), 2);
    assert_eq!(ds.prune_expired(minted.expires_at()).await.unwrap(), 1);
    assert_eq!(ds.prune_expired(exp).await.unwrap(), 1);
    assert!(ds.revocations(exp).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(700));
    revs.refresh(&ds, &ca).await.unwrap();
    assert!(revs.crls().is_empty());
}

#[test]
fn serials_are_normalised() {
    assert_eq!(normalize_serial("AB:cd:01").as_deref(), Some("abcd01"));
    assert_eq!(normalize_serial("abc").as_deref(), Some("0abc"));
    assert_eq!(normalize_serial("xyz"), None);
}
