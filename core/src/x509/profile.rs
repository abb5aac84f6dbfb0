//! Certificate templates: the X509-SVID leaf profile and the signing-CA
//! profile, exactly as the SPIFFE X509-SVID standard describes them.

use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SigningKey,
};

use super::X509Error;
use crate::{SpiffeId, TrustDomain};

/// A 16-byte serial: 0x01, the milliseconds since the Unix epoch of `at`
/// (6 bytes, big-endian), then 72 random bits. Positive with a non-zero
/// first byte (RFC 5280 §4.1.2.2, and its DER content is exactly these
/// bytes); more than the 64 random bits CA/Browser Forum rules ask for.
/// Ordered by time so the server's index of issued serials grows at its
/// end: fully random serials dirtied one index page per SVID recorded.
pub fn serial_at(at: SystemTime) -> SerialNumber {
    use rand::RngCore;
    let ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let ms = u64::try_from(ms).unwrap_or(u64::MAX).to_be_bytes();
    let mut bytes = [0u8; 16];
    let (head, random) = bytes.split_at_mut(7);
    head[0] = 0x01;
    head[1..].copy_from_slice(&ms[2..]);
    rand::thread_rng().fill_bytes(random);
    SerialNumber::from_slice(&bytes)
}

/// The leaf profile: one URI SAN, cA=false, critical key usage with
/// digitalSignature only, EKU serverAuth + clientAuth.
pub fn leaf_params(
    spiffe_id: &SpiffeId,
    dns_names: &[String],
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, X509Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(None);
    if let Some(cn) = dns_names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, cn.as_str());
    }
    params.subject_alt_names =
        vec![SanType::URI(spiffe_id.to_string().try_into().map_err(
            |e: rcgen::Error| X509Error::Issue(e.to_string()),
        )?)];
    for dns in dns_names {
        params.subject_alt_names.push(SanType::DnsName(
            dns.as_str()
                .try_into()
                .map_err(|e: rcgen::Error| X509Error::Issue(format!("DNS name {dns:?}: {e}")))?,
        ));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.serial_number = Some(serial_at(not_before));
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// A signing CA for `td`: cA=true, critical key usage keyCertSign + cRLSign,
/// the trust domain's SPIFFE ID (no path) as its URI SAN.
pub fn ca_params(
    td: &TrustDomain,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, X509Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(Some(td));
    params.subject_alt_names =
        vec![SanType::URI(td.id_string().try_into().map_err(
            |e: rcgen::Error| X509Error::Issue(e.to_string()),
        )?)];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.serial_number = Some(serial_at(not_before));
    Ok(params)
}

/// Signs `params` for `public_key` with `issuer`; returns the DER.
pub fn sign_leaf(
    params: &CertificateParams,
    public_key: &impl PublicKeyData,
    issuer: &Issuer<'_, impl SigningKey>,
) -> Result<Vec<u8>, X509Error> {
    Ok(params.signed_by(public_key, issuer)?.der().to_vec())
}

fn subject(td: Option<&TrustDomain>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "Signet");
    if let Some(td) = td {
        dn.push(DnType::CommonName, format!("Signet CA {td}"));
    }
    dn
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn serials_sort_by_time_and_differ_within_one_millisecond() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_590_400_123);
        let a = serial_at(t).to_bytes();
        let b = serial_at(t).to_bytes();
        let later = serial_at(t + Duration::from_millis(1)).to_bytes();
        assert_eq!(a.len(), 16);
        assert_eq!(a[..7], [0x01, 0x01, 0x9a, 0xd9, 0xc8, 0xb2, 0x7b]);
        assert_ne!(a, b, "72 random bits");
        assert!(later > a && later > b);
    }
}
