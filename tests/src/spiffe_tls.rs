//! Mutual TLS between two workloads the SPIFFE way: each presents its
//! X509-SVID and judges the other's against the bundle of the trust domain
//! the peer's SPIFFE ID names, from the bundles its own Workload API gave.
//! A peer of a trust domain without a bundle is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use signet_core::{Clock, SystemClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One side: its SVID (chain DER, PKCS#8 key) and the X.509 bundles it
/// trusts, by trust domain.
pub struct Side {
    pub chain: Vec<Vec<u8>>,
    pub key: Vec<u8>,
    pub bundles: BTreeMap<String, Vec<Vec<u8>>>,
}

impl Side {
    /// From what the `spiffe` crate fetched: the default SVID and every
    /// bundle of the context.
    pub fn from_context(ctx: &spiffe::X509Context) -> Side {
        let svid = ctx.default_svid().expect("an SVID");
        Side {
            chain: svid
                .cert_chain()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect(),
            key: svid.private_key().as_bytes().to_vec(),
            bundles: ctx
                .bundle_set()
                .iter()
                .map(|(td, b)| {
                    let certs = b.authorities().iter().map(|c| c.as_bytes().to_vec());
                    (td.to_string(), certs.collect())
                })
                .collect(),
        }
    }
}

/// What each side saw of the other: (client's SPIFFE ID as the server saw
/// it, server's SPIFFE ID as the client saw it); or both sides' errors.
pub async fn handshake(client: &Side, server: &Side) -> Result<(String, String), String> {
    let provider = signet_core::crypto::tls_provider();
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(PeerVerifier::new(&server.bundles)))
        .with_single_cert(certs(&server.chain), key(&server.key))
        .map_err(|e| e.to_string())?;
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier::new(&client.bundles)))
        .with_client_auth_cert(certs(&client.chain), key(&client.key))
        .map_err(|e| e.to_string())?;

    let (near, far) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let name = ServerName::try_from("workload").map_err(|e| e.to_string())?;
    // One byte each way: the client's completes the TLS 1.3 handshake on
    // the server's side, the server's answer tells the client it was
    // accepted (a refused client certificate comes back as an alert).
    let (served, connected) = tokio::join!(
        async {
            let mut tls = acceptor.accept(far).await.map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            let id = peer_id(tls.get_ref().1.peer_certificates())?;
            tls.write_all(b"!").await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(id)
        },
        async {
            let mut tls = connector
                .connect(name, near)
                .await
                .map_err(|e| e.to_string())?;
            tls.write_all(b"!").await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            peer_id(tls.get_ref().1.peer_certificates())
        }
    );
    match (served, connected) {
        (Ok(s), Ok(c)) => Ok((s, c)),
        (s, c) => Err(format!(
            "server side: {:?}; client side: {:?}",
            s.err(),
            c.err()
        )),
    }
}

/// A TLS client's verifier accepting any X509-SVID that validates against
/// the bundle of its trust domain in `bundles` (e.g. to GET an https_spiffe
/// bundle endpoint).
pub fn spiffe_server_verifier(
    bundles: &BTreeMap<String, Vec<Vec<u8>>>,
) -> Arc<dyn ServerCertVerifier> {
    Arc::new(PeerVerifier::new(bundles))
}

fn certs(chain: &[Vec<u8>]) -> Vec<CertificateDer<'static>> {
    chain.iter().cloned().map(CertificateDer::from).collect()
}

fn key(der: &[u8]) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(der.to_vec().into())
}

fn peer_id(certs: Option<&[CertificateDer<'_>]>) -> Result<String, String> {
    let leaf = certs.and_then(|c| c.first()).ok_or("no peer certificate")?;
    signet_core::x509::cert_info(leaf)
        .map_err(|e| e.to_string())?
        .spiffe_id
        .map(|id| id.to_string())
        .ok_or_else(|| "the peer certificate has no SPIFFE ID".to_string())
}

/// Judges a peer's X509-SVID against the bundle of its own trust domain.
#[derive(Debug)]
struct PeerVerifier {
    bundles: BTreeMap<String, Vec<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PeerVerifier {
    fn new(bundles: &BTreeMap<String, Vec<Vec<u8>>>) -> PeerVerifier {
        PeerVerifier {
            bundles: bundles.clone(),
            provider: signet_core::crypto::tls_provider(),
        }
    }

    fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let general = |e: String| rustls::Error::General(e);
        let td = signet_core::x509::cert_info(leaf)
            .map_err(|e| general(e.to_string()))?
            .spiffe_id
            .ok_or_else(|| general("the peer certificate has no SPIFFE ID".into()))?
            .trust_domain()
            .to_string();
        let bundle = self
            .bundles
            .get(&td)
            .ok_or_else(|| general(format!("no bundle for trust domain {td}")))?;
        let chain: Vec<Vec<u8>> = std::iter::once(leaf)
            .chain(intermediates)
            .map(|c| c.to_vec())
            .collect();
        signet_core::x509::validate_x509_svid(&chain, bundle, SystemClock.now())
            .map(|_| ())
            .map_err(|e| general(e.to_string()))
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }

    fn tls12(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates)
            .map(|()| ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates)
            .map(|()| ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}
