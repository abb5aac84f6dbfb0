//! The upstream authority on disk (`[upstream_authority.disk] cert_path,
//! key_path`): a root every server's X.509 CA is an intermediate of, so the
//! trust bundle is that root and stays the same as servers come and go.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rcgen::KeyPair;
use signet_core::x509::{cert_info, key_matches_leaf};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::issuer::{self, CaIssuer};
use crate::ca::CaError;

/// Where the upstream root and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamDisk {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// The loaded root: it signs each new CA of this server.
pub struct UpstreamCa {
    pub cert_der: Vec<u8>,
    pub issuer: Arc<CaIssuer>,
    pub not_after: SystemTime,
}

impl std::fmt::Debug for UpstreamCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCa")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn bad(path: &Path, what: impl std::fmt::Display) -> CaError {
    CaError::Io(path.to_owned(), what.to_string())
}

impl UpstreamDisk {
    /// Reads and checks the root and its key (blocking: call it on the
    /// blocking pool). The key file must be the owner's alone.
    pub fn load(&self) -> Result<UpstreamCa, CaError> {
        use std::os::unix::fs::PermissionsExt;
        let key_meta = std::fs::metadata(&self.key_path).map_err(|e| bad(&self.key_path, e))?;
        if key_meta.permissions().mode() & 0o077 != 0 {
            return Err(bad(
                &self.key_path,
                "the upstream key is readable by other users: chmod 0600 it",
            ));
        }
        let pem = std::fs::read(&self.cert_path).map_err(|e| bad(&self.cert_path, e))?;
        let certs = signet_core::pem::decode_certs(&pem).map_err(|e| bad(&self.cert_path, e))?;
        let [cert_der] = certs.as_slice() else {
            return Err(bad(
                &self.cert_path,
                format!("expected one certificate, found {}", certs.len()),
            ));
        };
        let key_pem = zeroize::Zeroizing::new(
            std::fs::read(&self.key_path).map_err(|e| bad(&self.key_path, e))?,
        );
        let key_der = zeroize::Zeroizing::new(
            signet_core::pem::decode_private_key(&key_pem).map_err(|e| bad(&self.key_path, e))?,
        );
        check_signing_ca(cert_der).map_err(|e| bad(&self.cert_path, e))?;
        key_matches_leaf(cert_der, &key_der).map_err(|e| {
            bad(
                &self.key_path,
                format!("does not match the certificate: {e}"),
            )
        })?;
        let info = cert_info(cert_der)?;
        let key = KeyPair::try_from(key_der.as_slice()).map_err(|e| bad(&self.key_path, e))?;
        Ok(UpstreamCa {
            cert_der: cert_der.clone(),
            issuer: issuer::build(cert_der, issuer::SharedKey::Local(Arc::new(key)))?,
            not_after: info.not_after,
        })
    }
}

/// The certificate must be a CA allowed to sign certificates.
pub(crate) fn check_signing_ca(der: &[u8]) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| e.to_string())?
        .is_some_and(|bc| bc.value.ca);
    let signs = cert
        .key_usage()
        .map_err(|e| e.to_string())?
        .is_none_or(|ku| ku.value.key_cert_sign());
    if is_ca && signs {
        Ok(())
    } else {
        Err(
            "not a CA certificate allowed to sign certificates (basicConstraints cA, keyCertSign)"
                .into(),
        )
    }
}
