//! Certificate templates: the X509-SVID leaf profile and the signing-CA
//! profile, exactly as the SPIFFE X509-SVID standard describes them.

use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SigningKey,
};

use super::X509Error;
use crate::{SpiffeId, TrustDomain};

/// 16 random bytes, positive and never zero (RFC 5280 §4.1.2.2).
pub fn random_serial() -> SerialNumber {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
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
    params.serial_number = Some(random_serial());
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
    params.serial_number = Some(random_serial());
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
