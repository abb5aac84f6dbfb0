//! Client half of x509pop node attestation: the host certificate chain and
//! its key from PEM files; the key signs the server's nonce (ECDSA P-256:
//! ASN.1 DER over SHA-256; P-384: SHA-384; RSA: PKCS#1 v1.5 SHA-256).

use rcgen::{KeyPair, SigningKey, PKCS_RSA_SHA256};
use signet_core::{SpiffeId, TrustDomain};

use crate::config::X509PopConfig;

#[derive(Debug, thiserror::Error)]
pub enum HostCertError {
    #[error("x509pop: cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("x509pop: {path} holds no certificate")]
    NoCertificate { path: String },
    #[error("x509pop: the private key in {path} is not usable (PKCS#8 EC P-256/P-384 or RSA expected): {message}")]
    Key { path: String, message: String },
    #[error("x509pop: the private key does not belong to the host certificate")]
    KeyMismatch,
    #[error("x509pop: signing the challenge failed: {0}")]
    Sign(String),
}

/// The host certificate chain (leaf first) and its key.
pub struct HostIdentity {
    pub chain: Vec<Vec<u8>>,
    key: KeyPair,
}

impl HostIdentity {
    pub fn load(cfg: &X509PopConfig) -> Result<Self, HostCertError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| HostCertError::Read {
                path: p.display().to_string(),
                message: e.to_string(),
            })
        };
        let certs = read(&cfg.certificate_path)?;
        let chain = signet_core::pem::decode_certs(&certs).map_err(|e| HostCertError::Read {
            path: cfg.certificate_path.display().to_string(),
            message: e.to_string(),
        })?;
        if chain.is_empty() {
            return Err(HostCertError::NoCertificate {
                path: cfg.certificate_path.display().to_string(),
            });
        }
        let key_text = read(&cfg.private_key_path)?;
        let key_err = |message: String| HostCertError::Key {
            path: cfg.private_key_path.display().to_string(),
            message,
        };
        let pem = String::from_utf8(key_text).map_err(|e| key_err(e.to_string()))?;
        let key = KeyPair::from_pem(&pem)
            .or_else(|_| KeyPair::from_pem_and_sign_algo(&pem, &PKCS_RSA_SHA256))
            .map_err(|e| key_err(e.to_string()))?;
        Self::new(chain, key)
    }

    pub fn new(chain: Vec<Vec<u8>>, key: KeyPair) -> Result<Self, HostCertError> {
        let leaf = chain.first().ok_or(HostCertError::KeyMismatch)?;
        signet_core::x509::key_matches_leaf(leaf, &key.serialize_der())
            .map_err(|_| HostCertError::KeyMismatch)?;
        Ok(Self { chain, key })
    }

    /// The ID the server will give: `.../signet/agent/x509pop/<sha1 of leaf>`.
    pub fn agent_id(&self, td: &TrustDomain) -> Result<SpiffeId, signet_core::SpiffeIdError> {
        let leaf = self.chain.first().map(Vec::as_slice).unwrap_or_default();
        let fp = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, leaf);
        td.id(&format!("/signet/agent/x509pop/{}", hex::encode(fp)))
    }

    /// The proof of possession: the key's signature over `nonce`.
    pub fn sign(&self, nonce: &[u8]) -> Result<Vec<u8>, HostCertError> {
        self.key
            .sign(nonce)
            .map_err(|e| HostCertError::Sign(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType};

    #[test]
    fn pem_files_with_chain_and_pkcs8_key_load_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        for key in [
            KeyPair::generate().unwrap(),
            KeyPair::from_pem_and_sign_algo(
                include_str!("testdata/host-rsa.key"),
                &PKCS_RSA_SHA256,
            )
            .unwrap(),
        ] {
            let mut p = CertificateParams::new(vec!["edge-1.test".to_owned()]).unwrap();
            p.distinguished_name.push(DnType::CommonName, "edge-1");
            let cert = p.self_signed(&key).unwrap();
            let extra = CertificateParams::new(Vec::<String>::new())
                .unwrap()
                .self_signed(&KeyPair::generate().unwrap())
                .unwrap();
            let cert_path = dir.path().join("host.pem");
            let key_path = dir.path().join("host.key");
            std::fs::write(&cert_path, format!("{}{}", cert.pem(), extra.pem())).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            let host = HostIdentity::load(&X509PopConfig {
                certificate_path: cert_path,
                private_key_path: key_path,
            })
            .unwrap();
            assert_eq!(host.chain.len(), 2);
            let id = host
                .agent_id(&TrustDomain::new("example.org").unwrap())
                .unwrap()
                .to_string();
            assert!(id.starts_with("spiffe://example.org/signet/agent/x509pop/"));
            assert_eq!(id.rsplit('/').next().unwrap().len(), 40);
            assert!(!host.sign(b"nonce").unwrap().is_empty());
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other = KeyPair::generate().unwrap();
        assert!(matches!(
            HostIdentity::new(vec![cert.der().to_vec()], other),
            Err(HostCertError::KeyMismatch)
        ));
    }
}
