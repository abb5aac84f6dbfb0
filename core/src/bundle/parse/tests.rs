use std::time::Duration;

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::jwt::JwtSigner;

fn td() -> TrustDomain {
    TrustDomain::new("b.test").unwrap()
}

fn ca(key: &rcgen::KeyPair) -> Vec<u8> {
    let now = SystemClock.now();
    crate::x509::ca_params(&td(), now, now + Duration::from_secs(600))
        .unwrap()
        .self_signed(key)
        .unwrap()
        .der()
        .to_vec()
}

fn document() -> (Bundle, String) {
    let ca = ca(&rcgen::KeyPair::generate().unwrap());
    let (signer, _) = JwtSigner::generate("k1".into()).unwrap();
    let bundle = Bundle {
        trust_domain: td(),
        x509_authorities: vec![ca],
        jwt_authorities: vec![JwtAuthority {
            kid: "k1".into(),
            jwk: signer.jwk(),
            public_key: signer.public_key(),
            expires_at: 0,
        }],
        sequence: 7,
    };
    let doc = bundle.to_spiffe_document(300).unwrap();
    (bundle, doc)
}

fn refused(json: serde_json::Value) -> BundleParseError {
    parse_spiffe_bundle(&td(), json.to_string().as_bytes()).unwrap_err()
}

#[test]
fn a_published_bundle_parses_back_to_the_same_keys() {
    let (bundle, doc) = document();
    let parsed = parse_spiffe_bundle(&td(), doc.as_bytes()).unwrap();
    assert_eq!(parsed.refresh_hint, Some(300));
    assert_eq!(parsed.bundle.sequence, 7);
    assert_eq!(parsed.bundle.x509_authorities, bundle.x509_authorities);
    assert_eq!(parsed.bundle.jwt_keys(), bundle.jwt_keys());
}

#[test]
fn keys_of_other_uses_are_skipped_and_an_empty_bundle_is_a_bundle() {
    let (_, doc) = document();
    let mut json: serde_json::Value = serde_json::from_str(&doc).unwrap();
    json["keys"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"kty": "oct", "use": "future-use"}));
    let parsed = parse_spiffe_bundle(&td(), json.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.bundle.x509_authorities.len(), 1);
    let empty = parse_spiffe_bundle(&td(), br#"{"keys": []}"#).unwrap();
    assert!(empty.bundle.x509_authorities.is_empty());
    assert_eq!(empty.bundle.sequence, 0);
}

#[test]
fn every_malformed_key_refuses_the_document_saying_which() {
    let (_, doc) = document();
    let json: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let x509 = json["keys"][0].clone();
    let jwt = json["keys"][1].clone();
    let with = |key: serde_json::Value| serde_json::json!({"keys": [key]});
    assert!(matches!(
        parse_spiffe_bundle(&td(), b"<html>"),
        Err(BundleParseError::Json(_))
    ));
    let mut no_use = x509.clone();
    no_use.as_object_mut().unwrap().remove("use");
    assert_eq!(
        refused(with(no_use)),
        BundleParseError::MissingUse { index: 0 }
    );
    let mut two = x509.clone();
    let cert = x509["x5c"][0].clone();
    two["x5c"] = serde_json::json!([cert, cert]);
    assert_eq!(refused(with(two)), BundleParseError::X5cCount { index: 0 });
    let mut garbage = x509.clone();
    garbage["x5c"] = serde_json::json!(["!!!"]);
    assert!(matches!(
        refused(with(garbage)),
        BundleParseError::BadCertificate { index: 0, .. }
    ));
    // The certificate of another key than the JWK states.
    let mut swapped = x509.clone();
    let other = ca(&rcgen::KeyPair::generate().unwrap());
    swapped["x5c"] = serde_json::json!([STANDARD.encode(other)]);
    assert_eq!(
        refused(with(swapped)),
        BundleParseError::KeyMismatch { index: 0 }
    );
    let mut no_kid = jwt.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    assert_eq!(
        refused(with(no_kid)),
        BundleParseError::MissingKid { index: 0 }
    );
    assert_eq!(
        refused(serde_json::json!({"keys": [jwt.clone(), jwt]})),
        BundleParseError::DuplicateKid("k1".into())
    );
}

#[test]
fn a_leaf_certificate_is_no_trust_anchor() {
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["x.test".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let jwk = Jwk::x509_authority(leaf.der(), &cert_public_key(leaf.der()).unwrap());
    let json = serde_json::json!({"keys": [jwk]});
    assert!(matches!(
        refused(json),
        BundleParseError::BadCertificate { index: 0, .. }
    ));
    assert!(matches!(
        bundle_from_pem(&td(), leaf.pem().as_bytes()),
        Err(BundleParseError::BadPemCertificate { index: 0, .. })
    ));
}

#[test]
fn pem_bundles_hold_the_certificates_in_order() {
    let (a, b) = (
        ca(&rcgen::KeyPair::generate().unwrap()),
        ca(&rcgen::KeyPair::generate().unwrap()),
    );
    let pem = format!(
        "{}{}",
        pem::encode(&pem::Pem::new("CERTIFICATE", a.clone())),
        pem::encode(&pem::Pem::new("CERTIFICATE", b.clone()))
    );
    let bundle = bundle_from_pem(&td(), pem.as_bytes()).unwrap();
    assert_eq!(bundle.x509_authorities, vec![a, b]);
    assert!(matches!(
        bundle_from_pem(&td(), b"nothing"),
        Err(BundleParseError::Pem(_))
    ));
}
