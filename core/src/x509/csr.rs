//! Certificate signing requests: the agent builds one per workload key; the
//! server parses it, checks its signature and reads the requested SPIFFE ID.

use rcgen::{CertificateParams, CertificateSigningRequestParams, SanType};
use rustls_pki_types::CertificateSigningRequestDer;

use super::X509Error;
use crate::SpiffeId;

/// A DER CSR for `key` naming `spiffe_id` as its only URI SAN.
pub fn build_csr(key: &impl rcgen::SigningKey, spiffe_id: &SpiffeId) -> Result<Vec<u8>, X509Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names =
        vec![SanType::URI(spiffe_id.to_string().try_into().map_err(
            |e: rcgen::Error| X509Error::Issue(e.to_string()),
        )?)];
    Ok(params.serialize_request(key)?.der().to_vec())
}

/// What the server takes from a CSR: the public key (signature verified)
/// and the single SPIFFE ID it asks for.
#[derive(Debug)]
pub struct ParsedCsr {
    pub spiffe_id: SpiffeId,
    pub public_key: rcgen::PublicKey,
}

pub fn parse_csr(der: &[u8]) -> Result<ParsedCsr, X509Error> {
    let parsed =
        CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der))
            .map_err(|e| X509Error::Csr(e.to_string()))?;
    let uris: Vec<&str> = parsed
        .params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            SanType::URI(u) => Some(u.as_str()),
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else {
        return Err(X509Error::UriSanCount(uris.len()));
    };
    Ok(ParsedCsr {
        spiffe_id: SpiffeId::parse_with_path(uri)?,
        public_key: parsed.public_key,
    })
}
