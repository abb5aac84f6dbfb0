//! X.509-SVIDs: the certificate profiles of the X509-SVID standard, CSRs,
//! and validation of a chain against a bundle.

mod csr;
mod der;
mod profile;
mod validate;

pub use csr::{build_csr, parse_csr, ParsedCsr};
pub use der::split_der_certs;
pub use profile::{ca_params, leaf_params, serial_at, sign_leaf};
pub use validate::{
    cert_info, check_issued_leaf, check_leaf_profile, key_matches_leaf, public_key_matches_leaf,
    validate_x509_svid, CertInfo, IssuedLeaf,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("certificate could not be parsed: {0}")]
    Parse(String),
    #[error("CSR could not be parsed or its signature is invalid: {0}")]
    Csr(String),
    #[error("must hold exactly one URI SAN (found {0})")]
    UriSanCount(usize),
    #[error("URI SAN is not a valid SPIFFE ID: {0}")]
    BadSpiffeId(#[from] crate::SpiffeIdError),
    #[error("leaf must not be a CA (basic constraints cA=true)")]
    LeafIsCa,
    #[error("leaf key usage must be present and critical")]
    KeyUsageNotCritical,
    #[error("leaf key usage must include digitalSignature")]
    MissingDigitalSignature,
    #[error("leaf key usage must not include keyCertSign or cRLSign")]
    LeafCanSign,
    #[error("extended key usage must include both serverAuth and clientAuth")]
    ExtendedKeyUsage,
    #[error("certificate chain is empty")]
    EmptyChain,
    #[error("certificate does not chain to a CA of the trust bundle")]
    UnknownIssuer,
    #[error("certificate has expired")]
    Expired,
    #[error("certificate is not valid yet (check the clocks)")]
    NotYetValid,
    #[error("certificate does not chain to the trust bundle: {0}")]
    Untrusted(String),
    #[error("private key does not match the leaf certificate")]
    KeyMismatch,
    #[error("certificate could not be issued: {0}")]
    Issue(String),
}

impl From<rcgen::Error> for X509Error {
    fn from(e: rcgen::Error) -> Self {
        X509Error::Issue(e.to_string())
    }
}

/// An X.509 authority's id, the same everywhere (server, agent, CLIs):
/// lowercase hex SHA-256 of its certificate's DER.
pub fn authority_id(ca_der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, ca_der).as_ref())
}
