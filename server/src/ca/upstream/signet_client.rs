//! One `NewDownstreamX509CA` exchange: this server's X509-SVID from the
//! upstream agent's Workload API, mTLS to the upstream's Node API (its
//! server SVID checked against the configured roots and the agent's
//! bundle), the CSR sent, the answer returned as it came.

use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::ClientConfig;
use signet_core::x509::split_der_certs;
use signet_core::TrustDomain;
use signet_proto::node::node_client::NodeClient;
use signet_proto::node::NewDownstreamX509caRequest;
use signet_proto::uds;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_proto::workload::X509svidRequest;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::Endpoint;

use super::signet::UpstreamSignet;
use super::SignedCa;
use crate::api::tls::SERVER_ID_PATH;
use crate::federation::verify::SpiffeEndpoint;

/// SNI name; the verifier checks the SPIFFE ID, not DNS names.
const SERVER_NAME: &str = "signet-server";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading the trust bundle {0:?}")]
    ReadBundle(PathBuf, #[source] std::io::Error),
    #[error("the trust bundle {0:?} holds no PEM certificate")]
    EmptyBundle(PathBuf),
    #[error("the upstream agent's Workload API at {0:?}")]
    AgentSocket(PathBuf, #[source] tonic::transport::Error),
    #[error("the upstream agent gave no SVID ({0:?}: {1}); is there a downstream entry for this server?")]
    NoSvid(tonic::Code, String),
    #[error("the upstream agent's answer: {0}")]
    BadAnswer(String),
    #[error("the upstream agent's bundle stream ({0:?}): {1}")]
    Bundles(tonic::Code, String),
    #[error("TLS client configuration")]
    Tls(#[source] rustls::Error),
    #[error("connecting")]
    Connect(#[source] tonic::transport::Error),
    #[error("refused ({0:?}): {1}")]
    Refused(tonic::Code, String),
}

/// An error and its causes, one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// This server's X509-SVID: chain (leaf first), PKCS#8 key, and the
/// trust domain's bundle as the agent holds it.
struct OwnSvid {
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
    bundle: Vec<Vec<u8>>,
}

async fn own_svid(settings: &UpstreamSignet) -> Result<OwnSvid, ClientError> {
    let socket = &settings.workload_api_socket;
    let channel = uds::channel(socket)
        .await
        .map_err(|e| ClientError::AgentSocket(socket.clone(), e))?;
    let refused = |s: tonic::Status| ClientError::NoSvid(s.code(), s.message().to_owned());
    let mut stream = SpiffeWorkloadApiClient::new(channel)
        .fetch_x509svid(uds::workload_request(X509svidRequest {}))
        .await
        .map_err(refused)?
        .into_inner();
    let first = stream
        .message()
        .await
        .map_err(refused)?
        .ok_or_else(|| ClientError::BadAnswer("the stream ended at once".into()))?;
    let wanted = settings.spiffe_id.as_ref().map(ToString::to_string);
    let svid = first
        .svids
        .into_iter()
        .find(|s| wanted.as_ref().is_none_or(|id| *id == s.spiffe_id))
        .ok_or_else(|| {
            ClientError::BadAnswer(format!(
                "no SVID {} in the response",
                wanted.as_deref().unwrap_or_default()
            ))
        })?;
    let bad = |what: &str, e: signet_core::x509::X509Error| {
        ClientError::BadAnswer(format!("{what}: {e}"))
    };
    Ok(OwnSvid {
        chain: split_der_certs(&svid.x509_svid).map_err(|e| bad("the SVID", e))?,
        key: svid.x509_svid_key,
        bundle: split_der_certs(&svid.bundle).map_err(|e| bad("the bundle", e))?,
    })
}

/// The configured roots, and what the agent's bundle adds to them (the
/// upstream's current roots, after a rotation).
async fn trust_roots(
    settings: &UpstreamSignet,
    from_agent: Vec<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, ClientError> {
    let path = &settings.trust_bundle_path;
    let pem = tokio::fs::read(path)
        .await
        .map_err(|e| ClientError::ReadBundle(path.clone(), e))?;
    let mut roots = signet_core::pem::decode_certs(&pem).unwrap_or_default();
    if roots.is_empty() {
        return Err(ClientError::EmptyBundle(path.clone()));
    }
    for der in from_agent {
        if !roots.contains(&der) {
            roots.push(der);
        }
    }
    Ok(roots)
}

fn tls_config(
    td: &TrustDomain,
    svid: OwnSvid,
    roots: Vec<Vec<u8>>,
) -> Result<Arc<ClientConfig>, ClientError> {
    let server_id = td
        .id(SERVER_ID_PATH)
        .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
    let chain = svid.chain.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.key));
    let mut config = ClientConfig::builder_with_provider(signet_core::crypto::tls_provider())
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(SpiffeEndpoint::new(server_id, roots))
        .with_client_auth_cert(chain, key)
        .map_err(ClientError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Asks the upstream to sign `csr` as a CA living `ttl` seconds at most.
/// The caller bounds the whole exchange in time.
pub async fn new_downstream_ca(
    settings: &UpstreamSignet,
    td: &TrustDomain,
    csr: Vec<u8>,
    ttl: u32,
) -> Result<SignedCa, ClientError> {
    let mut svid = own_svid(settings).await?;
    let roots = trust_roots(settings, std::mem::take(&mut svid.bundle)).await?;
    let tls = tls_config(td, svid, roots)?;
    let address = settings.server_address.clone();
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let tls = TlsConnector::from(tls.clone());
        let address = address.clone();
        async move {
            let tcp = TcpStream::connect(address.as_str()).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(SERVER_NAME)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let channel = Endpoint::from_static("http://signet-server")
        .connect_with_connector(connector)
        .await
        .map_err(ClientError::Connect)?;
    let answer = NodeClient::new(channel)
        .new_downstream_x509ca(NewDownstreamX509caRequest { csr, ttl })
        .await
        .map_err(|s| ClientError::Refused(s.code(), s.message().to_owned()))?
        .into_inner();
    Ok(SignedCa {
        chain: answer.ca_chain,
        roots: answer.x509_authorities,
    })
}
