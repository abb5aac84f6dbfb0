//! Shared by the in-process Node API tests: a TLS client for the Node API
//! that trusts only the server's SVID.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use signet_core::{Clock, SystemClock};
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rcgen::KeyPair;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use signet_core::x509::validate_x509_svid;
use signet_proto::node::node_client::NodeClient;
use tonic::transport::{Channel, Endpoint};

/// Accepts only the server's SVID, validated against the bundle.
#[derive(Debug)]
struct ServerSvidVerifier {
    bundle: Vec<Vec<u8>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for ServerSvidVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.to_vec())
            .collect();
        let id = validate_x509_svid(&chain, &self.bundle, SystemClock.now())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        assert_eq!(id.to_string(), "spiffe://example.org/signet/server");
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
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
    fn verify_tls13_signature(
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
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub async fn node_client(
    addr: SocketAddr,
    bundle: &[Vec<u8>],
    identity: Option<(&[Vec<u8>], &KeyPair)>,
) -> Result<NodeClient<Channel>, tonic::transport::Error> {
    let connector = tokio_rustls::TlsConnector::from(client_config(bundle, identity));
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let name = ServerName::try_from("signet-server").unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await?;
    Ok(NodeClient::new(channel))
}

/// The alert the server answers a handshake presenting `identity` with,
/// read after the client's side of a TLS 1.3 handshake completes; `None`
/// when the server accepts it (and sends its first HTTP/2 bytes).
pub async fn tls_alert(
    addr: SocketAddr,
    bundle: &[Vec<u8>],
    identity: (&[Vec<u8>], &KeyPair),
) -> Option<rustls::AlertDescription> {
    use tokio::io::AsyncReadExt;
    let alert =
        |e: std::io::Error| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::AlertReceived(a)) => Some(*a),
            other => panic!("refused without an alert: {other:?} ({e})"),
        };
    let connector = tokio_rustls::TlsConnector::from(client_config(bundle, Some(identity)));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("signet-server").unwrap();
    let mut tls = match connector.connect(name, tcp).await {
        Ok(t) => t,
        Err(e) => return alert(e),
    };
    let mut first = [0u8; 1];
    match tls.read(&mut first).await {
        Ok(n) if n > 0 => None,
        Ok(_) => panic!("closed without an alert"),
        Err(e) => alert(e),
    }
}

fn client_config(
    bundle: &[Vec<u8>],
    identity: Option<(&[Vec<u8>], &KeyPair)>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerSvidVerifier {
            bundle: bundle.to_vec(),
            provider,
        }));
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(
                chain
                    .iter()
                    .map(|c| CertificateDer::from(c.clone()))
                    .collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// An agent attested with a join token: its ID, SVID chain and key.
pub struct JoinedAgent {
    pub id: signet_core::SpiffeId,
    pub chain: Vec<Vec<u8>>,
    pub key: KeyPair,
}

impl JoinedAgent {
    /// Attests over the Node API with `token`.
    pub async fn attest(addr: SocketAddr, bundle: &[Vec<u8>], token: &str) -> Self {
        use signet_proto::node::{attest_params, attest_request, attest_response};
        use signet_proto::node::{AttestParams, AttestRequest};
        let key = KeyPair::generate().unwrap();
        let id = signet_core::SpiffeId::parse(&format!(
            "spiffe://example.org/signet/agent/join_token/{token}"
        ))
        .unwrap();
        let req = AttestRequest {
            step: Some(attest_request::Step::Params(AttestParams {
                method: Some(attest_params::Method::JoinToken(token.into())),
                csr: signet_core::x509::build_csr(&key, &id).unwrap(),
            })),
        };
        let mut client = node_client(addr, bundle, None).await.unwrap();
        let mut stream = client
            .attest(tokio_stream::once(req))
            .await
            .unwrap()
            .into_inner();
        let Some(attest_response::Step::Result(r)) = stream.message().await.unwrap().unwrap().step
        else {
            panic!("attestation gave no result")
        };
        JoinedAgent {
            id,
            chain: r.svid_chain,
            key,
        }
    }

    /// A Node API client presenting this agent's SVID.
    pub async fn client(&self, addr: SocketAddr, bundle: &[Vec<u8>]) -> NodeClient<Channel> {
        node_client(addr, bundle, Some((&self.chain, &self.key)))
            .await
            .unwrap()
    }
}
