use signet_core::{Clock, SystemClock};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SigningKey, PKCS_RSA_SHA256,
};
use rustls_pki_types::CertificateDer;

use super::*;

const RSA_KEY: &str = include_str!("../../../tests/data/host-rsa.key");

struct Pki {
    ca_der: Vec<u8>,
    ca_key: KeyPair,
}

fn ca(name: &str) -> Pki {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Pki {
        ca_der: cert.der().to_vec(),
        ca_key: key,
    }
}

fn host_params(cn: &str, dns: &[&str]) -> CertificateParams {
    let mut p =
        CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    p
}

impl Pki {
    fn issue(&self, params: CertificateParams, key: &KeyPair) -> Vec<u8> {
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(self.ca_der.as_slice()), &self.ca_key)
                .unwrap();
        params.signed_by(key, &issuer).unwrap().der().to_vec()
    }

    fn host(&self, cn: &str, dns: &[&str]) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate().unwrap();
        (self.issue(host_params(cn, dns), &key), key)
    }

    fn trusted(&self) -> TrustedCa {
        TrustedCa {
            fingerprint: sha1_hex(&self.ca_der),
            der: self.ca_der.clone(),
        }
    }

    /// An intermediate CA signed by this one.
    fn intermediate(&self, name: &str) -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().unwrap();
        Pki {
            ca_der: self.issue(p, &key),
            ca_key: key,
        }
    }
}

fn now() -> SystemTime {
    SystemClock.now()
}

#[test]
fn host_cert_of_a_trusted_ca_gives_its_id_and_selectors() {
    let other = ca("other");
    let org = ca("org");
    let (leaf, _) = org.host("edge-1", &["edge-1.corp.test", "Edge-1.Alt.test"]);
    let host = verify_chain(
        &[other.trusted(), org.trusted()],
        std::slice::from_ref(&leaf),
        now(),
    )
    .unwrap();
    assert_eq!(host.ca_fingerprint, sha1_hex(&org.ca_der));
    assert_eq!(host.leaf_fingerprint.len(), 40);
    let td = TrustDomain::new("example.org").unwrap();
    assert_eq!(
        host.agent_id(&td).unwrap().to_string(),
        format!(
            "spiffe://example.org/signet/agent/x509pop/{}",
            sha1_hex(&leaf)
        )
    );
    let selectors: Vec<String> = host.selectors().iter().map(|s| s.to_string()).collect();
    assert_eq!(
        selectors,
        [
            format!("x509pop:ca:fingerprint:{}", sha1_hex(&org.ca_der)),
            "x509pop:san:dns:edge-1.alt.test".to_owned(),
            "x509pop:san:dns:edge-1.corp.test".to_owned(),
            "x509pop:subject:cn:edge-1".to_owned(),
        ]
    );
}

#[test]
fn intermediates_after_the_leaf_are_used_and_the_root_is_the_anchor() {
    let root = ca("root");
    let inter = root.intermediate("issuing");
    let (leaf, _) = inter.host("edge-2", &[]);
    let host = verify_chain(
        &[root.trusted()],
        &[leaf.clone(), inter.ca_der.clone()],
        now(),
    )
    .unwrap();
    assert_eq!(host.ca_fingerprint, sha1_hex(&root.ca_der));
    assert!(verify_chain(&[root.trusted()], &[leaf], now()).is_err());
}

#[test]
fn host_cert_of_another_ca_is_refused_with_the_reason() {
    let org = ca("org");
    let rogue = ca("rogue");
    let (leaf, _) = rogue.host("edge-1", &[]);
    let err = verify_chain(&[org.trusted()], &[leaf], now()).unwrap_err();
    assert!(matches!(err, X509PopError::Untrusted(_)));
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert_eq!(
        verify_chain(&[org.trusted()], &[], now()).unwrap_err(),
        X509PopError::EmptyChain
    );
}

#[test]
fn expired_host_cert_is_refused() {
    let org = ca("org");
    let (leaf, _) = org.host("edge-1", &[]);
    let later = now() + Duration::from_secs(2 * 24 * 3600);
    assert!(matches!(
        verify_chain(&[org.trusted()], &[leaf], later),
        Err(X509PopError::Untrusted(_))
    ));
}

#[test]
fn signature_over_the_nonce_by_the_leaf_key_verifies_ecdsa_and_rsa() {
    let org = ca("org");
    let (leaf, key) = org.host("edge-1", &[]);
    let nonce = [7u8; NONCE_LEN];
    verify_signature(&leaf, &nonce, &key.sign(&nonce).unwrap()).unwrap();

    let rsa = KeyPair::from_pem_and_sign_algo(RSA_KEY, &PKCS_RSA_SHA256).unwrap();
    let rsa_leaf = org.issue(host_params("edge-rsa", &[]), &rsa);
    verify_signature(&rsa_leaf, &nonce, &rsa.sign(&nonce).unwrap()).unwrap();

    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let p384_leaf = org.issue(host_params("edge-384", &[]), &p384);
    verify_signature(&p384_leaf, &nonce, &p384.sign(&nonce).unwrap()).unwrap();
}

#[test]
fn signature_by_another_key_or_over_another_nonce_is_refused() {
    let org = ca("org");
    let (leaf, key) = org.host("edge-1", &[]);
    let stranger = KeyPair::generate().unwrap();
    let nonce = [1u8; NONCE_LEN];
    assert_eq!(
        verify_signature(&leaf, &nonce, &stranger.sign(&nonce).unwrap()),
        Err(X509PopError::BadSignature)
    );
    let old = key.sign(&[2u8; NONCE_LEN]).unwrap();
    assert_eq!(
        verify_signature(&leaf, &nonce, &old),
        Err(X509PopError::BadSignature)
    );
    assert_eq!(
        verify_signature(&leaf, &nonce, b""),
        Err(X509PopError::BadSignature)
    );
}

#[test]
fn a_nonce_answers_once_and_only_before_it_expires() {
    let challenges = Challenges::default();
    let t = now();
    let a = challenges.issue(t);
    let b = challenges.issue(t);
    assert_ne!(a, b);
    challenges.redeem(&a, t).unwrap();
    let stale = |r| matches!(r, Err(AttestError::StaleChallenge));
    assert!(stale(challenges.redeem(&a, t)));
    assert!(stale(challenges.redeem(&b, t + CHALLENGE_TTL)));
    assert!(stale(challenges.redeem(&[0u8; NONCE_LEN], t)));
}

#[test]
fn bundle_file_with_several_cas_loads_each_with_its_fingerprint() {
    let a = ca("a");
    let b = ca("b");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.pem");
    std::fs::write(
        &path,
        signet_core::pem::encode_certs([a.ca_der.as_slice(), b.ca_der.as_slice()]),
    )
    .unwrap();
    let cas = load_bundle(&path).unwrap();
    assert_eq!(cas.len(), 2);
    assert_eq!(cas[1].fingerprint, sha1_hex(&b.ca_der));
    std::fs::write(&path, "nothing").unwrap();
    assert!(load_bundle(&path).is_err());
}
