//! The parsed issuer of an X.509 authority, built once when the authority is
//! loaded or generated: rcgen's `Issuer::from_ca_cert_der` re-parses the CA
//! certificate, which per SVID cost as much as a quarter of a signature.

use std::sync::Arc;

use rcgen::{Issuer, KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};
use rustls_pki_types::CertificateDer;
use signet_core::jwt::{HeldKey, JwtPublicKey};
use signet_core::x509::X509Error;

use super::key_manager::PrivateKey;
use super::CaError;

/// The CA key, shared between the authority record and its issuer: in this
/// process, or held by a token (P-256 only, as every CA here).
#[derive(Clone)]
pub enum SharedKey {
    Local(Arc<KeyPair>),
    Held {
        key: Arc<dyn HeldKey>,
        /// The uncompressed point, as the certificate carries it.
        point: Vec<u8>,
    },
}

impl std::fmt::Debug for SharedKey {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SharedKey::Local(_) => "SharedKey::Local",
            SharedKey::Held { .. } => "SharedKey::Held",
        })
    }
}

impl SharedKey {
    /// The signing key of a CA from what the key manager handed out.
    pub fn from_private(key: &PrivateKey) -> Result<Self, CaError> {
        match key {
            PrivateKey::Software(der) => Ok(SharedKey::Local(Arc::new(
                KeyPair::try_from(der.as_slice()).map_err(|e| CaError::Key(e.to_string()))?,
            ))),
            PrivateKey::Held(key) => match key.public_key() {
                JwtPublicKey::P256(point) => Ok(SharedKey::Held {
                    point: point.clone(),
                    key: key.clone(),
                }),
                _ => Err(CaError::Key("an X.509 CA key must be P-256".into())),
            },
        }
    }
}

impl PublicKeyData for SharedKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            SharedKey::Local(k) => k.der_bytes(),
            SharedKey::Held { point, .. } => point,
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            SharedKey::Local(k) => k.algorithm(),
            SharedKey::Held { .. } => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

impl SigningKey for SharedKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            SharedKey::Local(k) => k.sign(msg),
            SharedKey::Held { key, .. } => {
                let fixed = key.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)?;
                signet_core::crypto::ecdsa_der(&fixed).ok_or(rcgen::Error::RemoteKeyError)
            }
        }
    }
}

pub type CaIssuer = Issuer<'static, SharedKey>;

/// Parses `cert_der` once into the issuer that signs with `key`.
pub fn build(cert_der: &[u8], key: SharedKey) -> Result<Arc<CaIssuer>, X509Error> {
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der), key)?;
    Ok(Arc::new(issuer))
}
