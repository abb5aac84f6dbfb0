//! TLS to the server: a rustls client config whose verifier checks the server
//! presents an X.509-SVID for exactly `spiffe://<td>/signet/server` that
//! chains to the current trust bundle (not Web PKI names), and that offers the
//! agent SVID as client certificate once the agent has one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use signet_core::SpiffeId;
use tokio::sync::watch;

use crate::attest::AgentSvid;

/// The bundle the verifier trusts; swapped by the sync task when it changes.
pub type BundleRx = watch::Receiver<Arc<Vec<Vec<u8>>>>;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// How the server certificate is judged.
#[derive(Clone)]
pub enum ServerTrust {
    /// Chain must validate against the bundle and carry the server's ID.
    Bundle(BundleRx),
    /// Accept any certificate: only for the first attestation.
    InsecureBootstrap,
}

pub fn client_config(
    trust: ServerTrust,
    server_id: SpiffeId,
    client_svid: Option<&AgentSvid>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = signet_core::crypto::tls_provider();
    let verifier = Arc::new(SpiffeServerVerifier {
        trust,
        server_id,
        provider: provider.clone(),
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_svid {
        Some(svid) => {
            let chain = svid
                .x509
                .chain
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect();
            let key = svid.key.tls_key()?;
            let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, key));
            builder.with_client_cert_resolver(Arc::new(AgentCertificate(certified)))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The agent SVID, offered whatever the server asks: it is the only one.
#[derive(Debug)]
struct AgentCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for AgentCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

struct SpiffeServerVerifier {
    trust: ServerTrust,
    server_id: SpiffeId,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiffeServerVerifier")
            .field("server_id", &self.server_id.to_string())
            .finish()
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bundle = match &self.trust {
            ServerTrust::InsecureBootstrap => return Ok(ServerCertVerified::assertion()),
            ServerTrust::Bundle(rx) => rx.borrow().clone(),
        };
        let mut chain = vec![end_entity.to_vec()];
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let id = signet_core::x509::validate_x509_svid(&chain, &bundle, now)
            .map_err(|e| rustls::Error::InvalidCertificate(certificate_error(e)))?;
        if id != self.server_id {
            tracing::warn!(presented = %id, expected = %self.server_id, "the server presented another SPIFFE ID");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS refusal (and so the alert sent) for an X.509-SVID that failed.
fn certificate_error(e: signet_core::x509::X509Error) -> rustls::CertificateError {
    use signet_core::x509::X509Error;
    match e {
        X509Error::UnknownIssuer => rustls::CertificateError::UnknownIssuer,
        X509Error::Expired => rustls::CertificateError::Expired,
        X509Error::NotYetValid => rustls::CertificateError::NotValidYet,
        other => rustls::CertificateError::Other(rustls::OtherError(Arc::new(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{Issuer, KeyPair};
    use signet_core::TrustDomain;

    fn issue(id: &str) -> (Vec<u8>, Vec<u8>) {
        let now = signet_core::Clock::now(&signet_core::SystemClock);
        let td = TrustDomain::new("example.org").unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let ca = signet_core::x509::ca_params(&td, now, now + Duration::from_secs(3600))
            .unwrap()
            .self_signed(&ca_key)
            .unwrap()
            .der()
            .to_vec();
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(ca.as_slice()), &ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params = signet_core::x509::leaf_params(
            &SpiffeId::parse(id).unwrap(),
            &[],
            now - Duration::from_secs(10),
            now + Duration::from_secs(600),
        )
        .unwrap();
        let leaf = signet_core::x509::sign_leaf(&params, &key, &issuer).unwrap();
        (leaf, ca)
    }

    fn verifier(bundle: Vec<u8>) -> SpiffeServerVerifier {
        let (_tx, rx) = watch::channel(Arc::new(vec![bundle]));
        SpiffeServerVerifier {
            trust: ServerTrust::Bundle(rx),
            server_id: SpiffeId::parse("spiffe://example.org/signet/server").unwrap(),
            provider: signet_core::crypto::tls_provider(),
        }
    }

    fn check(v: &SpiffeServerVerifier, leaf: &[u8]) -> Result<ServerCertVerified, rustls::Error> {
        v.verify_server_cert(
            &CertificateDer::from(leaf.to_vec()),
            &[],
            &ServerName::try_from("signet-server").unwrap(),
            &[],
            UnixTime::now(),
        )
    }

    #[test]
    fn server_svid_from_the_bundle_is_accepted() {
        let (leaf, ca) = issue("spiffe://example.org/signet/server");
        assert!(check(&verifier(ca), &leaf).is_ok());
    }

    #[test]
    fn wrong_server_id_is_refused() {
        let (leaf, ca) = issue("spiffe://example.org/not-the-server");
        assert_eq!(
            check(&verifier(ca), &leaf).err(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
            ))
        );
    }

    #[test]
    fn server_from_another_ca_is_refused() {
        let (leaf, _) = issue("spiffe://example.org/signet/server");
        let (_, other_ca) = issue("spiffe://example.org/x");
        assert_eq!(
            check(&verifier(other_ca), &leaf).err(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        );
    }
}
