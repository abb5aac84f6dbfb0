//! Validation of X.509-SVIDs: RFC 5280 path validation against a bundle
//! (rustls-webpki) plus the SPIFFE leaf rules webpki does not know.

use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::X509Error;
use crate::SpiffeId;

/// The facts callers need about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The single URI SAN, when it is a SPIFFE ID.
    pub spiffe_id: Option<SpiffeId>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Lowercase hex, no separators.
    pub serial_hex: String,
}

pub fn cert_info(der: &[u8]) -> Result<CertInfo, X509Error> {
    let cert = parse(der)?;
    let uris = uri_sans(&cert)?;
    let spiffe_id = match uris.as_slice() {
        [one] => SpiffeId::parse(one).ok(),
        _ => None,
    };
    Ok(CertInfo {
        spiffe_id,
        not_before: to_system_time(cert.validity().not_before.timestamp()),
        not_after: to_system_time(cert.validity().not_after.timestamp()),
        serial_hex: hex::encode(cert.raw_serial()),
    })
}

/// Checks the SPIFFE leaf rules and returns the leaf's SPIFFE ID.
pub fn check_leaf_profile(der: &[u8]) -> Result<SpiffeId, X509Error> {
    leaf_profile(&parse(der)?)
}

/// What an agent checks of an SVID its server has just signed over the
/// authenticated channel, from one parse and without a signature check: the
/// server is the CA, so re-verifying its signature would only double the
/// cost of every SVID (the chain is still validated wherever it comes from
/// elsewhere, e.g. the disk cache or a workload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLeaf {
    pub spiffe_id: SpiffeId,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Lowercase hex, no separators.
    pub serial_hex: String,
}

/// The SPIFFE leaf rules, the validity window at `now` and that the leaf
/// certifies `public_key` (the raw subject public key bits).
pub fn check_issued_leaf(
    der: &[u8],
    public_key: &[u8],
    now: SystemTime,
) -> Result<IssuedLeaf, X509Error> {
    let cert = parse(der)?;
    let spiffe_id = leaf_profile(&cert)?;
    if cert.public_key().subject_public_key.data.as_ref() != public_key {
        return Err(X509Error::KeyMismatch);
    }
    let not_before = to_system_time(cert.validity().not_before.timestamp());
    let not_after = to_system_time(cert.validity().not_after.timestamp());
    if now < not_before {
        return Err(X509Error::NotYetValid);
    }
    if now >= not_after {
        return Err(X509Error::Expired);
    }
    Ok(IssuedLeaf {
        spiffe_id,
        not_before,
        not_after,
        serial_hex: hex::encode(cert.raw_serial()),
    })
}

fn leaf_profile(cert: &X509Certificate<'_>) -> Result<SpiffeId, X509Error> {
    if cert.is_ca() {
        return Err(X509Error::LeafIsCa);
    }
    let mut saw_key_usage = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => {
                saw_key_usage = true;
                if !ext.critical {
                    return Err(X509Error::KeyUsageNotCritical);
                }
                if !ku.digital_signature() {
                    return Err(X509Error::MissingDigitalSignature);
                }
                if ku.key_cert_sign() || ku.crl_sign() {
                    return Err(X509Error::LeafCanSign);
                }
            }
            ParsedExtension::ExtendedKeyUsage(eku) if !(eku.server_auth && eku.client_auth) => {
                return Err(X509Error::ExtendedKeyUsage);
            }
            _ => {}
        }
    }
    if !saw_key_usage {
        return Err(X509Error::KeyUsageNotCritical);
    }
    let uris = uri_sans(cert)?;
    let [uri] = uris.as_slice() else {
        return Err(X509Error::UriSanCount(uris.len()));
    };
    Ok(SpiffeId::parse_with_path(uri)?)
}

/// Validates `chain` (DER, leaf first) against the CA certificates of
/// `bundle` at `now`, then the SPIFFE leaf rules. Returns the SPIFFE ID.
pub fn validate_x509_svid(
    chain: &[Vec<u8>],
    bundle: &[Vec<u8>],
    now: SystemTime,
) -> Result<SpiffeId, X509Error> {
    let (leaf, intermediates) = chain.split_first().ok_or(X509Error::EmptyChain)?;
    let id = check_leaf_profile(leaf)?;
    let anchors_der: Vec<CertificateDer<'_>> = bundle
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let anchors = anchors_der
        .iter()
        .map(|c| {
            webpki::anchor_from_trusted_cert(c).map_err(|e| X509Error::Untrusted(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let ee = EndEntityCert::try_from(&leaf_der).map_err(|e| X509Error::Parse(e.to_string()))?;
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| X509Error::Untrusted("clock is before 1970".into()))?;
    ee.verify_for_usage(
        crate::crypto::SIGNATURE_ALGORITHMS,
        &anchors,
        &intermediates,
        UnixTime::since_unix_epoch(since_epoch),
        KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| match e {
        // A CA of the same name (the same trust domain) but another key
        // fails on the signature: no CA of the bundle signed it either way.
        webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
            X509Error::UnknownIssuer
        }
        webpki::Error::CertExpired { .. } => X509Error::Expired,
        webpki::Error::CertNotValidYet { .. } => X509Error::NotYetValid,
        other => X509Error::Untrusted(format!("{other:?}")),
    })?;
    Ok(id)
}

/// Whether the PKCS#8 private key belongs to the leaf's public key.
pub fn key_matches_leaf(leaf_der: &[u8], pkcs8_der: &[u8]) -> Result<(), X509Error> {
    let key = rcgen::KeyPair::try_from(pkcs8_der).map_err(|_| X509Error::KeyMismatch)?;
    public_key_matches_leaf(leaf_der, key.public_key_raw())
}

/// Whether the certificate's subject public key is `raw` (an EC point, or
/// an RSA key's DER): for keys held where their private half cannot be read.
pub fn public_key_matches_leaf(leaf_der: &[u8], raw: &[u8]) -> Result<(), X509Error> {
    let cert = parse(leaf_der)?;
    if cert.public_key().subject_public_key.data.as_ref() == raw {
        Ok(())
    } else {
        Err(X509Error::KeyMismatch)
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, X509Error> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| X509Error::Parse(e.to_string()))?;
    if !rest.is_empty() {
        return Err(X509Error::Parse(
            "trailing bytes after the certificate".into(),
        ));
    }
    Ok(cert)
}

fn uri_sans<'a>(cert: &'a X509Certificate<'_>) -> Result<Vec<&'a str>, X509Error> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| X509Error::Parse(e.to_string()))?;
    Ok(san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

fn to_system_time(unix: i64) -> SystemTime {
    crate::clock::from_unix_seconds(unix)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{Issuer, KeyPair};

    use super::*;
    use crate::x509::{build_csr, ca_params, leaf_params, parse_csr, sign_leaf};
    use crate::TrustDomain;

    struct Ca {
        cert: Vec<u8>,
        key: KeyPair,
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn ca() -> Ca {
        let key = KeyPair::generate().unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let params = ca_params(
            &td,
            now() - Duration::from_secs(60),
            now() + Duration::from_secs(86400),
        )
        .unwrap();
        let cert = params.self_signed(&key).unwrap().der().to_vec();
        Ca { cert, key }
    }

    fn issue(ca: &Ca, id: &str) -> (Vec<u8>, KeyPair) {
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(ca.cert.as_slice()), &ca.key).unwrap();
        let key = KeyPair::generate().unwrap();
        let id = SpiffeId::parse(id).unwrap();
        let csr = parse_csr(&build_csr(&key, &id).unwrap()).unwrap();
        assert_eq!(csr.spiffe_id, id);
        let params = leaf_params(
            &id,
            &["web.local".into()],
            now() - Duration::from_secs(30),
            now() + Duration::from_secs(3600),
        )
        .unwrap();
        (sign_leaf(&params, &csr.public_key, &issuer).unwrap(), key)
    }

    #[test]
    fn issued_svid_validates_and_follows_the_leaf_profile() {
        let ca = ca();
        let (leaf, key) = issue(&ca, "spiffe://example.org/web");
        let id = validate_x509_svid(
            std::slice::from_ref(&leaf),
            std::slice::from_ref(&ca.cert),
            now(),
        )
        .unwrap();
        assert_eq!(id.to_string(), "spiffe://example.org/web");
        key_matches_leaf(&leaf, &key.serialize_der()).unwrap();
        let info = cert_info(&leaf).unwrap();
        assert_eq!(info.not_after, now() + Duration::from_secs(3600));
        assert_eq!(info.serial_hex.len(), 32);

        let cert = parse(&leaf).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.digital_signature());
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth && eku.value.client_auth);
    }

    #[test]
    fn issued_leaf_checks_profile_key_and_validity_in_one_parse() {
        let ca = ca();
        let (leaf, key) = issue(&ca, "spiffe://example.org/web");
        let facts = check_issued_leaf(&leaf, key.public_key_raw(), now()).unwrap();
        assert_eq!(facts.spiffe_id.to_string(), "spiffe://example.org/web");
        assert_eq!(facts.not_after, now() + Duration::from_secs(3600));
        assert_eq!(facts.serial_hex, cert_info(&leaf).unwrap().serial_hex);

        let other = KeyPair::generate().unwrap();
        assert_eq!(
            check_issued_leaf(&leaf, other.public_key_raw(), now()),
            Err(X509Error::KeyMismatch)
        );
        let late = now() + Duration::from_secs(3600);
        assert_eq!(
            check_issued_leaf(&leaf, key.public_key_raw(), late),
            Err(X509Error::Expired)
        );
        let early = now() - Duration::from_secs(3600);
        assert_eq!(
            check_issued_leaf(&leaf, key.public_key_raw(), early),
            Err(X509Error::NotYetValid)
        );
        assert_eq!(
            check_issued_leaf(&ca.cert, ca.key.public_key_raw(), now()),
            Err(X509Error::LeafIsCa)
        );
    }

    #[test]
    fn ca_certificate_is_rejected_as_a_leaf() {
        let ca = ca();
        assert_eq!(check_leaf_profile(&ca.cert), Err(X509Error::LeafIsCa));
        let info = cert_info(&ca.cert).unwrap();
        assert_eq!(info.spiffe_id.unwrap().to_string(), "spiffe://example.org");
    }

    #[test]
    fn svid_from_another_ca_is_untrusted() {
        let (leaf, _) = issue(&ca(), "spiffe://example.org/web");
        let other = ca();
        assert_eq!(
            validate_x509_svid(&[leaf], &[other.cert], now()),
            Err(X509Error::UnknownIssuer)
        );
    }

    #[test]
    fn expired_svid_is_untrusted() {
        let ca = ca();
        let (leaf, _) = issue(&ca, "spiffe://example.org/web");
        assert_eq!(
            validate_x509_svid(
                std::slice::from_ref(&leaf),
                std::slice::from_ref(&ca.cert),
                now() + Duration::from_secs(7200)
            ),
            Err(X509Error::Expired)
        );
        assert_eq!(
            validate_x509_svid(&[leaf], &[ca.cert], now() - Duration::from_secs(7200)),
            Err(X509Error::NotYetValid)
        );
    }

    #[test]
    fn wrong_key_does_not_match() {
        let ca = ca();
        let (leaf, _) = issue(&ca, "spiffe://example.org/web");
        let other = KeyPair::generate().unwrap();
        assert_eq!(
            key_matches_leaf(&leaf, &other.serialize_der()),
            Err(X509Error::KeyMismatch)
        );
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(cert_info(b"nope"), Err(X509Error::Parse(_))));
        assert!(matches!(parse_csr(b"nope"), Err(X509Error::Csr(_))));
        assert_eq!(
            validate_x509_svid(&[], &[], now()),
            Err(X509Error::EmptyChain)
        );
    }

    #[test]
    fn csr_for_root_id_is_refused() {
        let key = KeyPair::generate().unwrap();
        let id = SpiffeId::parse("spiffe://example.org").unwrap();
        let der = build_csr(&key, &id).unwrap();
        assert!(matches!(parse_csr(&der), Err(X509Error::BadSpiffeId(_))));
    }

    /// A leaf from `ca` for `spiffe://example.org/web` after `change` has
    /// altered its parameters.
    fn issue_with(ca: &Ca, change: impl FnOnce(&mut rcgen::CertificateParams)) -> Vec<u8> {
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(ca.cert.as_slice()), &ca.key).unwrap();
        let key = KeyPair::generate().unwrap();
        let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
        let mut params = leaf_params(
            &id,
            &[],
            now() - Duration::from_secs(30),
            now() + Duration::from_secs(3600),
        )
        .unwrap();
        change(&mut params);
        sign_leaf(&params, &key, &issuer).unwrap()
    }

    #[test]
    fn each_leaf_profile_rule_refuses_with_its_own_error() {
        use rcgen::{CustomExtension, ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType};
        let ca = ca();
        let check =
            |leaf: Vec<u8>| validate_x509_svid(&[leaf], std::slice::from_ref(&ca.cert), now());
        // keyUsage present but not critical: rcgen always marks its own
        // critical, so the extension is written by hand (digitalSignature).
        let leaf = issue_with(&ca, |p| {
            p.key_usages.clear();
            let mut ku =
                CustomExtension::from_oid_content(&[2, 5, 29, 15], vec![0x03, 0x02, 0x07, 0x80]);
            ku.set_criticality(false);
            p.custom_extensions.push(ku);
        });
        assert_eq!(check(leaf), Err(X509Error::KeyUsageNotCritical));
        let leaf = issue_with(&ca, |p| p.key_usages.clear());
        assert_eq!(check(leaf), Err(X509Error::KeyUsageNotCritical));
        let leaf = issue_with(&ca, |p| {
            p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]
        });
        assert_eq!(check(leaf), Err(X509Error::MissingDigitalSignature));
        let leaf = issue_with(&ca, |p| p.key_usages.push(KeyUsagePurpose::KeyCertSign));
        assert_eq!(check(leaf), Err(X509Error::LeafCanSign));
        let leaf = issue_with(&ca, |p| p.key_usages.push(KeyUsagePurpose::CrlSign));
        assert_eq!(check(leaf), Err(X509Error::LeafCanSign));
        let leaf = issue_with(&ca, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]
        });
        assert_eq!(check(leaf), Err(X509Error::ExtendedKeyUsage));
        let leaf = issue_with(&ca, |p| {
            p.subject_alt_names.push(SanType::URI(
                "spiffe://example.org/other".try_into().unwrap(),
            ))
        });
        assert_eq!(check(leaf), Err(X509Error::UriSanCount(2)));
        let leaf = issue_with(&ca, |p| {
            p.subject_alt_names = vec![SanType::DnsName("web.local".try_into().unwrap())]
        });
        assert_eq!(check(leaf), Err(X509Error::UriSanCount(0)));
        let leaf = issue_with(&ca, |p| {
            p.not_before = (now() + Duration::from_secs(600)).into();
        });
        assert_eq!(check(leaf), Err(X509Error::NotYetValid));
    }

    #[test]
    fn csrs_with_two_uri_sans_or_a_bad_signature_are_refused() {
        use rcgen::{CertificateParams, SanType};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::URI("spiffe://example.org/a".try_into().unwrap()),
            SanType::URI("spiffe://example.org/b".try_into().unwrap()),
        ];
        let two = params.serialize_request(&key).unwrap().der().to_vec();
        assert_eq!(parse_csr(&two).err(), Some(X509Error::UriSanCount(2)));

        let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
        let mut der = build_csr(&key, &id).unwrap();
        // The signature is the CSR's last bytes: flip one.
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert!(
            matches!(parse_csr(&der), Err(X509Error::Csr(m)) if m.contains("ignature")),
            "{:?}",
            parse_csr(&der)
        );
    }
}
