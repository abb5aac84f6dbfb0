//! A raw Node API client with a chosen client certificate, to check what the
//! server refuses (entries of other agents, foreign CAs, mismatched CSRs).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use signet_proto::node::node_client::NodeClient;
use tonic::transport::{Channel, Endpoint};

/// Trusts any server: these tests are about what the *server* accepts.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects to the Node API at `addr`, presenting `chain` (DER, leaf first)
/// with `pkcs8_key`, or no client certificate when `chain` is empty.
pub async fn node_client(addr: &str, chain: &[Vec<u8>], pkcs8_key: &[u8]) -> NodeClient<Channel> {
    try_node_client(addr, chain, pkcs8_key)
        .await
        .expect("connect to the Node API")
}

/// Like [`node_client`], but a failed connection (e.g. a refused TLS
/// handshake) is returned, not a panic.
pub async fn try_node_client(
    addr: &str,
    chain: &[Vec<u8>],
    pkcs8_key: &[u8],
) -> Result<NodeClient<Channel>, tonic::transport::Error> {
    try_node_client_from(addr, None, chain, pkcs8_key).await
}

/// Like [`try_node_client`], the connection made from `source` (any
/// 127.0.0.0/8 address reaches a loopback server).
pub async fn try_node_client_from(
    addr: &str,
    source: Option<std::net::IpAddr>,
    chain: &[Vec<u8>],
    pkcs8_key: &[u8],
) -> Result<NodeClient<Channel>, tonic::transport::Error> {
    let connector = tokio_rustls::TlsConnector::from(client_config(chain, pkcs8_key));
    let addr = addr.to_string();
    // "http": TLS is done by our connector, not by tonic.
    let channel: Channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            let addr = addr.clone();
            async move {
                let tcp = match source {
                    None => tokio::net::TcpStream::connect(&addr).await?,
                    Some(ip) => {
                        let to: std::net::SocketAddr = addr
                            .parse()
                            .map_err(|e| std::io::Error::other(format!("{addr}: {e}")))?;
                        let socket = tokio::net::TcpSocket::new_v4()?;
                        socket.bind(std::net::SocketAddr::new(ip, 0))?;
                        socket.connect(to).await?
                    }
                };
                let name = ServerName::try_from("signet-server").expect("name");
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await?;
    Ok(NodeClient::new(channel))
}

/// A TLS client config for the Node API that trusts any server and
/// presents `chain` with `pkcs8_key` (none when `chain` is empty).
pub fn client_config(chain: &[Vec<u8>], pkcs8_key: &[u8]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut config = if chain.is_empty() {
        builder.with_no_client_auth()
    } else {
        let certs = chain
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8_key.to_vec()));
        builder
            .with_client_auth_cert(certs, key)
            .expect("client cert")
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Attests as an agent would, with a join token and a fresh key; returns
/// the result and the key.
pub async fn attest(
    server: &crate::TestServer,
    token: &str,
) -> Result<(signet_proto::node::AttestResult, rcgen::KeyPair), tonic::Status> {
    use signet_proto::node::{attest_params, attest_request, attest_response};
    use signet_proto::node::{AttestParams, AttestRequest};
    let key = rcgen::KeyPair::generate().expect("key");
    let placeholder =
        signet_core::SpiffeId::parse(&server.id("/signet/agent/pending")).expect("id");
    let csr = signet_core::x509::build_csr(&key, &placeholder).expect("csr");
    let mut client = try_node_client(&server.addr, &[], &[])
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e}")))?;
    let req = AttestRequest {
        step: Some(attest_request::Step::Params(AttestParams {
            method: Some(attest_params::Method::JoinToken(token.to_string())),
            csr,
        })),
    };
    let mut stream = client.attest(tokio_stream::once(req)).await?.into_inner();
    match stream.message().await?.and_then(|m| m.step) {
        Some(attest_response::Step::Result(r)) => Ok((r, key)),
        other => Err(tonic::Status::unknown(format!(
            "unexpected attest answer {other:?}"
        ))),
    }
}

/// A signing request for `entry_id` with a fresh key for `spiffe_id`.
pub fn sign_params(
    entry_id: &str,
    spiffe_id: &str,
) -> (signet_proto::node::SignX509SvidParams, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("key");
    let id = signet_core::SpiffeId::parse(spiffe_id).expect("id");
    let csr = signet_core::x509::build_csr(&key, &id).expect("csr");
    (
        signet_proto::node::SignX509SvidParams {
            entry_id: entry_id.into(),
            csr,
        },
        key,
    )
}

/// What a server made of a TLS client: it took the connection (and sent
/// its first HTTP/2 bytes), or refused it with an alert, or just closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsOutcome {
    Accepted,
    Alert(rustls::AlertDescription),
    Closed,
}

/// Handshakes with `addr` presenting `chain` and `pkcs8_key`, then reads:
/// under TLS 1.3 a refused client certificate shows as the server's alert
/// on that first read, after the client's side of the handshake is done.
pub async fn tls_outcome(addr: &str, chain: &[Vec<u8>], pkcs8_key: &[u8]) -> TlsOutcome {
    use tokio::io::AsyncReadExt;
    let alert = |e: &std::io::Error| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(|r| match r {
                rustls::Error::AlertReceived(a) => Some(*a),
                _ => None,
            })
    };
    let connector = tokio_rustls::TlsConnector::from(client_config(chain, pkcs8_key));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("signet-server").expect("name");
    let mut tls = match connector.connect(name, tcp).await {
        Ok(t) => t,
        Err(e) => return alert(&e).map_or(TlsOutcome::Closed, TlsOutcome::Alert),
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut first)).await {
        Ok(Ok(n)) if n > 0 => TlsOutcome::Accepted,
        Ok(Ok(_)) => TlsOutcome::Closed,
        Ok(Err(e)) => alert(&e).map_or(TlsOutcome::Closed, TlsOutcome::Alert),
        Err(_) => panic!("the server neither spoke nor refused within 10 s"),
    }
}

/// An attestation begun by hand, as a (misbehaving) agent would: the
/// server's challenge, and the stream to answer it on.
pub struct AttestExchange {
    pub challenge: Vec<u8>,
    requests: tokio::sync::mpsc::Sender<signet_proto::node::AttestRequest>,
    responses: tonic::Streaming<signet_proto::node::AttestResponse>,
}

impl AttestExchange {
    /// Sends `method`'s evidence (with a CSR for a pending ID) from
    /// `source`, and reads the challenge; a refusal is the server's status.
    pub async fn begin(
        server: &crate::TestServer,
        source: Option<std::net::IpAddr>,
        method: signet_proto::node::attest_params::Method,
    ) -> Result<Self, tonic::Status> {
        use signet_proto::node::{attest_request, attest_response, AttestParams, AttestRequest};
        let key = rcgen::KeyPair::generate().unwrap();
        let id = signet_core::SpiffeId::parse(&server.id("/signet/agent/pending")).unwrap();
        let csr = signet_core::x509::build_csr(&key, &id).unwrap();
        let (requests, rx) = tokio::sync::mpsc::channel(2);
        requests
            .send(AttestRequest {
                step: Some(attest_request::Step::Params(AttestParams {
                    method: Some(method),
                    csr,
                })),
            })
            .await
            .unwrap();
        let mut client = try_node_client_from(&server.addr, source, &[], &[])
            .await
            .expect("connect to the Node API");
        let mut responses = client
            .attest(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        match responses.message().await?.and_then(|m| m.step) {
            Some(attest_response::Step::Challenge(challenge)) => Ok(Self {
                challenge,
                requests,
                responses,
            }),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    /// Answers the challenge; `Ok` once the server sent its result.
    pub async fn answer(mut self, response: Vec<u8>) -> Result<(), tonic::Status> {
        use signet_proto::node::{attest_request, attest_response, AttestRequest};
        self.requests
            .send(AttestRequest {
                step: Some(attest_request::Step::ChallengeResponse(response)),
            })
            .await
            .unwrap();
        match self.responses.message().await?.and_then(|m| m.step) {
            Some(attest_response::Step::Result(_)) => Ok(()),
            other => panic!("expected a result, got {other:?}"),
        }
    }
}
