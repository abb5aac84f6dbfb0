//! The trust domain's X.509 authority: a self-signed P-256 root kept in
//! `<data-dir>/ca/`, reused across restarts and regenerated only when missing,
//! expired or for another trust domain. It signs every X.509-SVID; beside it
//! the JWT key (`jwt.rs`) signs every JWT-SVID.

mod disk;
mod jwt;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair, PublicKeyData};
use rustls_pki_types::CertificateDer;
use signet_core::clock::{from_unix_seconds, unix_seconds};
use signet_core::jwt::{mint_jwt_svid, Jwk, JwtError, JwtPublicKey, JwtSigner, MintParams};
use signet_core::x509::{
    ca_params, cert_info, key_matches_leaf, leaf_params, sign_leaf, X509Error,
};
use signet_core::{Clock, SpiffeId, TrustDomain};

pub use disk::{create_private_dir, write_atomic, CaFiles};
pub use jwt::{JwtKeyFiles, JWT_KEY_FILE, JWT_KID_FILE};

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
    #[error("JWT-SVID: {0}")]
    Jwt(#[from] JwtError),
}

/// The certificates a peer trusts for this trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub trust_domain: TrustDomain,
    /// DER CA certificates.
    pub x509_authorities: Vec<Vec<u8>>,
    /// Public keys that verify JWT-SVIDs.
    pub jwt_authorities: Vec<JwtAuthority>,
    /// Increases whenever the authorities change (kept in the datastore).
    pub sequence: u64,
}

impl Bundle {
    /// `(kid, key)` pairs, as `signet_core::bundle` takes them.
    pub fn jwt_keys(&self) -> Vec<(String, JwtPublicKey)> {
        self.jwt_authorities
            .iter()
            .map(|a| (a.kid.clone(), a.public_key.clone()))
            .collect()
    }

    /// A digest of the authorities (not the sequence): when it differs from
    /// the stored one, the bundle changed and its sequence must increase.
    pub fn fingerprint(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for der in &self.x509_authorities {
            ctx.update(b"x509\0");
            ctx.update(&(der.len() as u64).to_be_bytes());
            ctx.update(der);
        }
        for a in &self.jwt_authorities {
            ctx.update(b"jwt\0");
            ctx.update(&(a.kid.len() as u64).to_be_bytes());
            ctx.update(a.kid.as_bytes());
            let key = format!("{:?}", a.public_key);
            ctx.update(&(key.len() as u64).to_be_bytes());
            ctx.update(key.as_bytes());
        }
        hex::encode(ctx.finish().as_ref())
    }
}

/// A JWT signing key as the bundle publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthority {
    pub kid: String,
    /// The `jwt-svid` JWK.
    pub jwk: Jwk,
    pub public_key: JwtPublicKey,
    /// Unix seconds after which nothing it signed is valid (no token
    /// outlives the CA).
    pub expires_at: i64,
}

/// A freshly minted JWT-SVID.
#[derive(Debug, Clone)]
pub struct MintedJwt {
    pub token: String,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
}

/// A freshly signed X.509-SVID.
#[derive(Debug, Clone)]
pub struct IssuedSvid {
    /// DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    pub not_after: SystemTime,
    pub serial_hex: String,
    /// The signing X.509 authority: hex SHA-256 of its certificate DER.
    pub authority_id: String,
}

struct Authority {
    cert_der: Vec<u8>,
    key: KeyPair,
    not_after: SystemTime,
}

pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    clock: Arc<dyn Clock>,
    backdate: Duration,
    default_svid_ttl: Duration,
    default_jwt_svid_ttl: Duration,
    active: RwLock<Arc<Authority>>,
    jwt: JwtSigner,
    sequence: AtomicU64,
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
    pub default_jwt_svid_ttl: Duration,
    pub backdate: Duration,
}

impl CertificateAuthority {
    /// Reuses the CA in `dir` when it is valid for this trust domain and not
    /// expired; otherwise generates a new one and persists it. The JWT key
    /// in the same dir is loaded, or created when missing.
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
        let (jwt, jwt_created) = JwtKeyFiles::new(dir.to_path_buf()).load_or_create()?;
        tracing::info!(kid = %jwt.kid(), created = jwt_created, "JWT-SVID signing key ready");
        Ok((
            Self {
                trust_domain: settings.trust_domain,
                clock,
                backdate: settings.backdate,
                default_svid_ttl: settings.default_svid_ttl,
                default_jwt_svid_ttl: settings.default_jwt_svid_ttl,
                active: RwLock::new(Arc::new(authority)),
                jwt,
                sequence: AtomicU64::new(0),
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

    pub fn default_jwt_svid_ttl(&self) -> Duration {
        self.default_jwt_svid_ttl
    }

    pub fn bundle(&self) -> Bundle {
        let a = self.authority();
        Bundle {
            trust_domain: self.trust_domain.clone(),
            x509_authorities: vec![a.cert_der.clone()],
            jwt_authorities: vec![JwtAuthority {
                kid: self.jwt.kid().to_owned(),
                jwk: self.jwt.jwk(),
                public_key: self.jwt.public_key(),
                expires_at: unix_seconds(a.not_after),
            }],
            sequence: self.sequence.load(Ordering::SeqCst),
        }
    }

    /// Sets the bundle sequence the datastore decided on (see
    /// `crate::bundle::sync_sequence`).
    pub fn set_bundle_sequence(&self, sequence: u64) {
        self.sequence.store(sequence, Ordering::SeqCst);
    }

    /// The time the active CA has left, or `Expired`.
    fn time_left(&self, a: &Authority, now: SystemTime) -> Result<Duration, CaError> {
        a.not_after
            .duration_since(now)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or(CaError::Expired)
    }

    /// Mints a JWT-SVID for `id` and `audience` (non-empty, no empty
    /// string). TTL: `ttl` (or the default JWT-SVID TTL), capped by the time
    /// the CA has left. Times are whole seconds.
    pub fn mint_jwt_svid(
        &self,
        id: &SpiffeId,
        audience: &[String],
        ttl: Option<Duration>,
    ) -> Result<MintedJwt, CaError> {
        let a = self.authority();
        let now = from_unix_seconds(unix_seconds(self.clock.now()));
        let left = self.time_left(&a, now)?;
        let ttl = ttl.unwrap_or(self.default_jwt_svid_ttl).min(left);
        let expires_at = now + ttl;
        let token = mint_jwt_svid(
            &self.jwt,
            &MintParams {
                subject: id,
                audience,
                issued_at: now,
                expires_at,
                jti: uuid::Uuid::new_v4().to_string(),
            },
        )?;
        Ok(MintedJwt {
            token,
            issued_at: unix_seconds(now),
            expires_at: unix_seconds(expires_at),
        })
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
        let left = self.time_left(&a, now)?;
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
            authority_id: authority_id(&a.cert_der),
        })
    }
}

/// An X.509 authority's id: lowercase hex SHA-256 of its certificate DER.
pub fn authority_id(cert_der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, cert_der).as_ref())
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
        not_after: info.not_after,
    }))
}

fn generate(td: &TrustDomain, ttl: Duration, now: SystemTime) -> Result<Authority, CaError> {
    let key = KeyPair::generate().map_err(|e| CaError::Key(e.to_string()))?;
    // Whole seconds, so the times read back from the file match.
    let now = from_unix_seconds(unix_seconds(now));
    let not_before = now - Duration::from_secs(30);
    let not_after = now + ttl;
    let params = ca_params(td, not_before, not_after)?;
    let cert = params.self_signed(&key).map_err(X509Error::from)?;
    Ok(Authority {
        cert_der: cert.der().to_vec(),
        key,
        not_after,
    })
}

#[cfg(test)]
mod tests;
