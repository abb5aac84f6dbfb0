//! How a peer's bundle endpoint is authenticated, per profile:
//! `https_spiffe` — an X509-SVID for exactly the configured SPIFFE ID,
//! valid against the bundle held for that ID's trust domain; `https_web` —
//! Web PKI for the URL's host, against the configured CAs or the system's.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use signet_core::x509::validate_x509_svid;
use signet_core::SpiffeId;

/// `https_spiffe`: the endpoint's SVID chains to `bundle` and names
/// `expected`; DNS names do not matter.
pub struct SpiffeEndpoint {
    expected: SpiffeId,
    bundle: Vec<Vec<u8>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl std::fmt::Debug for SpiffeEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiffeEndpoint")
            .field("expected", &self.expected.to_string())
            .finish_non_exhaustive()
    }
}

impl SpiffeEndpoint {
    pub fn new(expected: SpiffeId, bundle: Vec<Vec<u8>>) -> Arc<Self> {
        Arc::new(Self {
            expected,
            bundle,
            algorithms: signet_core::crypto::tls_provider().signature_verification_algorithms,
        })
    }
}

/// A refusal that says why, in the TLS alert and the error.
fn refused(reason: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
        std::io::Error::other(reason),
    ))))
}

impl ServerCertVerifier for SpiffeEndpoint {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let id = validate_x509_svid(&chain, &self.bundle, now)
            .map_err(|e| refused(format!("the endpoint's SVID does not validate: {e}")))?;
        if id != self.expected {
            return Err(refused(format!(
                "the endpoint presented {id}, not the configured {}",
                self.expected
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `https_web`: the Web PKI verifier, over `ca_pem`'s certificates or the
/// system's roots (read on the blocking pool: it reads files).
pub async fn web_pki(ca_pem: Option<&str>) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for der in signet_core::pem::decode_certs(pem.as_bytes())
                .map_err(|e| format!("ca_bundle: {e}"))?
            {
                roots
                    .add(CertificateDer::from(der))
                    .map_err(|e| format!("ca_bundle: {e}"))?;
            }
        }
        None => {
            let found = tokio::task::spawn_blocking(rustls_native_certs::load_native_certs)
                .await
                .map_err(|e| format!("reading the system's CA certificates: {e}"))?;
            for der in found.certs {
                // A system root rustls cannot use is skipped, as browsers do.
                let _ = roots.add(der);
            }
            if roots.is_empty() {
                return Err(
                    "no system CA certificates found: give the relationship a ca_bundle".into(),
                );
            }
        }
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        signet_core::crypto::tls_provider(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    Ok(verifier)
}
