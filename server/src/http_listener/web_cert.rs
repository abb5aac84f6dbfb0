//! A Web PKI certificate and key served from files (the bundle endpoint's
//! `https_web` profile, the OIDC discovery provider), reloaded when they
//! change.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are looked at.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("TLS certificate {path}: {reason}")]
pub struct CertError {
    pub path: PathBuf,
    pub reason: String,
}

/// A Web PKI certificate and key from files, swapped in when either
/// file's modification time changes (a renewed certificate needs no
/// restart). A file that does not load keeps the one served.
pub struct WebCert {
    /// Whose certificate, for the logs ("bundle endpoint").
    what: &'static str,
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl std::fmt::Debug for WebCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebCert")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

async fn modified(path: &PathBuf) -> Option<SystemTime> {
    tokio::fs::metadata(path).await.ok()?.modified().ok()
}

async fn load_key(cert_path: &PathBuf, key_path: &PathBuf) -> Result<CertifiedKey, CertError> {
    let bad = |path: &PathBuf, reason: String| CertError {
        path: path.clone(),
        reason,
    };
    let chain = tokio::fs::read(cert_path)
        .await
        .map_err(|e| bad(cert_path, e.to_string()))?;
    let chain =
        signet_core::pem::decode_certs(&chain).map_err(|e| bad(cert_path, e.to_string()))?;
    let key = zeroize::Zeroizing::new(
        tokio::fs::read(key_path)
            .await
            .map_err(|e| bad(key_path, e.to_string()))?,
    );
    let key = zeroize::Zeroizing::new(
        signet_core::pem::decode_private_key(&key).map_err(|e| bad(key_path, e.to_string()))?,
    );
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        key.to_vec(),
    ));
    let signer = signet_core::crypto::tls_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(key_path, e.to_string()))?;
    let chain = chain
        .into_iter()
        .map(rustls::pki_types::CertificateDer::from)
        .collect();
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| bad(key_path, format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

impl WebCert {
    pub async fn load(
        what: &'static str,
        cert_path: PathBuf,
        key_path: PathBuf,
    ) -> Result<Self, CertError> {
        let key = load_key(&cert_path, &key_path).await?;
        let stamps = (modified(&cert_path).await, modified(&key_path).await);
        Ok(Self {
            what,
            current: RwLock::new((stamps.0, stamps.1, Arc::new(key))),
            cert_path,
            key_path,
        })
    }

    /// Looks at the files every few seconds; runs until dropped.
    pub async fn reload_when_changed(self: Arc<Self>) {
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            let stamps = (
                modified(&self.cert_path).await,
                modified(&self.key_path).await,
            );
            let seen = {
                let c = self.current.read().unwrap_or_else(|e| e.into_inner());
                (c.0, c.1)
            };
            if stamps == seen {
                continue;
            }
            let loaded = load_key(&self.cert_path, &self.key_path).await;
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            // Either way these files were seen: warn once per change.
            (current.0, current.1) = stamps;
            match loaded {
                Ok(key) => {
                    current.2 = Arc::new(key);
                    tracing::info!(cert = %self.cert_path.display(), "{} certificate reloaded", self.what);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the {} certificate files changed but do not load; serving the previous one", self.what)
                }
            }
        }
    }
}

impl ResolvesServerCert for WebCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .2
                .clone(),
        )
    }
}
