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
                ecdsa_der(&fixed).ok_or(rcgen::Error::RemoteKeyError)
            }
        }
    }
}

/// An ECDSA signature r‖s (as tokens and JWS give it) in the DER form X.509
/// wants: SEQUENCE { INTEGER r, INTEGER s }.
fn ecdsa_der(fixed: &[u8]) -> Option<Vec<u8>> {
    if fixed.is_empty() || !fixed.len().is_multiple_of(2) || fixed.len() > 132 {
        return None;
    }
    let (r, s) = fixed.split_at(fixed.len() / 2);
    let int = |v: &[u8]| {
        let v = &v[v.iter().take_while(|b| **b == 0).count().min(v.len() - 1)..];
        let mut out = vec![0x02];
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push((v.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    };
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    Some(out)
}

pub type CaIssuer = Issuer<'static, SharedKey>;

/// Parses `cert_der` once into the issuer that signs with `key`.
pub fn build(cert_der: &[u8], key: SharedKey) -> Result<Arc<CaIssuer>, X509Error> {
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der), key)?;
    Ok(Arc::new(issuer))
}

#[cfg(test)]
mod tests {
    use ring::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};

    use super::ecdsa_der;

    #[test]
    fn fixed_signatures_become_der_that_verifies() {
        let rng = ring::rand::SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.as_ref(),
            &rng,
        )
        .unwrap();
        let public = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, key.public_key());
        // Enough signatures that some r or s has its high bit set or a
        // leading zero.
        for i in 0..64u8 {
            let fixed = key.sign(&rng, &[i]).unwrap();
            let der = ecdsa_der(fixed.as_ref()).unwrap();
            public.verify(&[i], &der).unwrap();
        }
        assert!(ecdsa_der(&[]).is_none());
        assert!(ecdsa_der(&[1, 2, 3]).is_none());
    }
}
