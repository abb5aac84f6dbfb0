//! The parsed issuer of an X.509 authority, built once when the authority is
//! loaded or generated: rcgen's `Issuer::from_ca_cert_der` re-parses the CA
//! certificate, which per SVID cost as much as a quarter of a signature.

use std::sync::Arc;

use rcgen::{Issuer, KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};
use rustls_pki_types::CertificateDer;
use signet_core::x509::X509Error;

/// The CA key, shared between the authority record and its issuer.
#[derive(Debug, Clone)]
pub struct SharedKey(pub Arc<KeyPair>);

impl PublicKeyData for SharedKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl SigningKey for SharedKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}

pub type CaIssuer = Issuer<'static, SharedKey>;

/// Parses `cert_der` once into the issuer that signs with `key`.
pub fn build(cert_der: &[u8], key: &Arc<KeyPair>) -> Result<Arc<CaIssuer>, X509Error> {
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der), SharedKey(key.clone()))?;
    Ok(Arc::new(issuer))
}
