//! An organisation's CA and the host certificates it issues, with the
//! server and agent config files of x509pop node attestation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use signet_core::{Clock, SystemClock};

pub struct OrgCa {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

pub fn org_ca(name: &str) -> OrgCa {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemClock.now();
    p.not_before = (now - Duration::from_secs(60)).into();
    p.not_after = (now + Duration::from_secs(86400)).into();
    OrgCa {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// A host certificate for `cn` signed by `ca`; returns (leaf DER, key).
pub fn host_cert(ca: &OrgCa, cn: &str) -> (Vec<u8>, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.subject_alt_names = vec![SanType::DnsName(
        format!("{cn}.example.net").try_into().unwrap(),
    )];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = SystemClock.now();
    p.not_before = (now - Duration::from_secs(60)).into();
    p.not_after = (now + Duration::from_secs(86400)).into();
    let issuer = Issuer::from_ca_cert_der(ca.cert.der(), &ca.key).unwrap();
    (p.signed_by(&key, &issuer).unwrap().der().to_vec(), key)
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The agent ID's last segment: the leaf's SHA-1 fingerprint.
pub fn sha1_hex(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A server config trusting `ca` for x509pop, `more` appended.
pub fn server_config(dir: &Path, ca: &OrgCa, more: &str) -> PathBuf {
    let bundle = write(dir, "org-ca.pem", &ca.cert.pem());
    write(
        dir,
        "server.toml",
        &format!(
            "[node_attestor.x509pop]\nca_bundle_path = {:?}\n\n{more}",
            bundle.to_str().unwrap()
        ),
    )
}

/// An agent config attesting with `leaf` and `key` (the chain after the
/// leaf in the same PEM, as the issue allows).
pub fn agent_config(dir: &Path, leaf: &[u8], key: &KeyPair, ca: &OrgCa) -> PathBuf {
    let chain = signet_core::pem::encode_certs([leaf, ca.cert.der().as_ref()]);
    let cert = write(dir, "host.pem", &chain);
    let key = write(dir, "host.key", &key.serialize_pem());
    write(
        dir,
        "agent.toml",
        &format!(
            "[node_attestor.x509pop]\ncertificate_path = {:?}\nprivate_key_path = {:?}\n",
            cert.to_str().unwrap(),
            key.to_str().unwrap()
        ),
    )
}
