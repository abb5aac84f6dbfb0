//! The trust domain's X.509 authority: a self-signed P-256 root kept in
//! `<data-dir>/ca/`, reused across restarts and regenerated only when missing,
//! expired or for another trust domain. It signs every X.509-SVID.

mod disk;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair, PublicKeyData};
use rustls_pki_types::CertificateDer;
use signet_core::clock::unix_seconds;
use signet_core::x509::{
    ca_params, cert_info, key_matches_leaf, leaf_params, sign_leaf, X509Error,
};
use signet_core::{Clock, SpiffeId, TrustDomain};

pub use disk::{create_private_dir, write_atomic, CaFiles};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    #[error("CA file {0:?}: {1}")]
    Io(std::path::PathBuf, String),
    #[error(transparent)]
    X509(#[from] X509Error),
    #[error("the CA has expired; restart the server to generate a new one")]
    Expired,
    #[error("CA key: {0}")]
    Key(String),
}

/// The certificates a peer trusts for this trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub trust_domain: TrustDomain,
    /// DER CA certificates.
    pub x509_authorities: Vec<Vec<u8>>,
    /// Increases whenever the authorities change.
    pub sequence: u64,
}

/// A freshly signed X.509-SVID.
#[derive(Debug, Clone)]
pub struct IssuedSvid {
    /// DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    pub not_after: SystemTime,
    pub serial_hex: String,
}

struct Authority {
    cert_der: Vec<u8>,
    key: KeyPair,
    not_before: SystemTime,
    not_after: SystemTime,
}

pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    clock: Arc<dyn Clock>,
    backdate: Duration,
    default_svid_ttl: Duration,
    active: RwLock<Arc<Authority>>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// Settings for [`CertificateAuthority::load_or_create`].
pub struct CaSettings {
    pub trust_domain: TrustDomain,
    pub ca_ttl: Duration,
    pub default_svid_ttl: Duration,
    pub backdate: Duration,
}

impl CertificateAuthority {
    /// Reuses the CA in `dir` when it is valid for this trust domain and not
    /// expired; otherwise generates a new one and persists it.
    pub fn load_or_create(
        dir: &Path,
        settings: CaSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, bool), CaError> {
        let files = CaFiles::new(dir.to_path_buf());
        let now = clock.now();
        let loaded = match files.read()? {
            Some((key_pem, cert_pem)) => load(&key_pem, &cert_pem, &settings.trust_domain, now)?,
            None => None,
        };
        let (authority, created) = match loaded {
            Some(a) => (a, false),
            None => {
                let a = generate(&settings.trust_domain, settings.ca_ttl, now)?;
                let key_pem = a.key.serialize_pem();
                let cert_pem = signet_core::pem::encode_certs([a.cert_der.as_slice()]);
                files.write(&key_pem, &cert_pem)?;
                (a, true)
            }
        };
        Ok((
            Self {
                trust_domain: settings.trust_domain,
                clock,
                backdate: settings.backdate,
                default_svid_ttl: settings.default_svid_ttl,
                active: RwLock::new(Arc::new(authority)),
            },
            created,
        ))
    }

    fn authority(&self) -> Arc<Authority> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn default_svid_ttl(&self) -> Duration {
        self.default_svid_ttl
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// When the active CA certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.authority().not_after
    }

    pub fn bundle(&self) -> Bundle {
        let a = self.authority();
        Bundle {
            trust_domain: self.trust_domain.clone(),
            x509_authorities: vec![a.cert_der.clone()],
            sequence: u64::try_from(unix_seconds(a.not_before)).unwrap_or(0),
        }
    }

    /// Signs an X.509-SVID for `id` over `public_key`. TTL: `ttl` (or the
    /// default), capped by the time the CA has left; notBefore back-dated.
    pub fn issue_x509_svid(
        &self,
        id: &SpiffeId,
        public_key: &impl PublicKeyData,
        dns_names: &[String],
        ttl: Option<Duration>,
    ) -> Result<IssuedSvid, CaError> {
        let a = self.authority();
        let now = self.clock.now();
        let left = a
            .not_after
            .duration_since(now)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or(CaError::Expired)?;
        let ttl = ttl.unwrap_or(self.default_svid_ttl).min(left);
        let not_after = now + ttl;
        let params = leaf_params(id, dns_names, now - self.backdate, not_after)?;
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(a.cert_der.as_slice()), &a.key)
            .map_err(X509Error::from)?;
        let der = sign_leaf(&params, public_key, &issuer)?;
        let info = cert_info(&der)?;
        Ok(IssuedSvid {
            chain: vec![der],
            not_after: info.not_after,
            serial_hex: info.serial_hex,
        })
    }
}

/// The public key of a DER PKCS#10 CSR whose signature verifies. Subject and
/// SANs are ignored: the caller decides the identity.
pub fn csr_public_key(der: &[u8]) -> Result<rcgen::PublicKey, X509Error> {
    rcgen::CertificateSigningRequestParams::from_der(
        &rustls_pki_types::CertificateSigningRequestDer::from(der),
    )
    .map(|p| p.public_key)
    .map_err(|e| X509Error::Csr(e.to_string()))
}

fn load(
    key_pem: &str,
    cert_pem: &str,
    td: &TrustDomain,
    now: SystemTime,
) -> Result<Option<Authority>, CaError> {
    let key_der = signet_core::pem::decode_private_key(key_pem.as_bytes())
        .map_err(|e| CaError::Key(e.to_string()))?;
    let certs = signet_core::pem::decode_certs(cert_pem.as_bytes())
        .map_err(|e| CaError::Key(e.to_string()))?;
    let Some(cert_der) = certs.into_iter().next() else {
        return Ok(None);
    };
    key_matches_leaf(&cert_der, &key_der)?;
    let info = cert_info(&cert_der)?;
    let same_td = info.spiffe_id.as_ref().map(|id| id.trust_domain()) == Some(td);
    if !same_td || info.not_after <= now {
        return Ok(None);
    }
    let key = KeyPair::try_from(key_der.as_slice()).map_err(|e| CaError::Key(e.to_string()))?;
    Ok(Some(Authority {
        cert_der,
        key,
        not_before: info.not_before,
        not_after: info.not_after,
    }))
}

fn generate(td: &TrustDomain, ttl: Duration, now: SystemTime) -> Result<Authority, CaError> {
    let key = KeyPair::generate().map_err(|e| CaError::Key(e.to_string()))?;
    // Whole seconds, so the bundle sequence read back from the file matches.
    let now = signet_core::clock::from_unix_seconds(unix_seconds(now));
    let not_before = now - Duration::from_secs(30);
    let not_after = now + ttl;
    let params = ca_params(td, not_before, not_after)?;
    let cert = params.self_signed(&key).map_err(X509Error::from)?;
    Ok(Authority {
        cert_der: cert.der().to_vec(),
        key,
        not_before,
        not_after,
    })
}

#[cfg(test)]
mod tests;
