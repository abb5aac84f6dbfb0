//! Opening one Node API channel: TCP and TLS (our SPIFFE server verifier)
//! to one server address under a short timeout, or to the first of several
//! that answers.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use signet_proto::node::node_client::NodeClient as GrpcNodeClient;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::Endpoint;

use super::{NodeClient, NodeClientError, ServerAddresses, Target};

/// SNI name; the verifier checks the SPIFFE ID, not DNS names.
const SERVER_NAME: &str = "signet-server";
/// TCP and TLS to one server. Short, because a black-holed server holds up
/// failover to the next one for this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 pings on an idle channel, and how long an answer may take before
/// the connection counts as dead: what finds a server that vanished
/// without closing its sockets (a partition, a powered-off host).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a Node API channel to `target` with `tls`: TCP, TLS and the HTTP/2
/// handshake within [`CONNECT_TIMEOUT`].
pub async fn connect_to(
    target: &Target,
    tls: Arc<rustls::ClientConfig>,
) -> Result<NodeClient, NodeClientError> {
    let addr = target.addr;
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let tls = TlsConnector::from(tls.clone());
        async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(SERVER_NAME)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let endpoint = Endpoint::from_static("http://signet-server")
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let channel = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect_with_connector(connector))
        .await
        .map_err(|_| NodeClientError::ConnectTimeout {
            server: target.to_string(),
        })?
        .map_err(|source| NodeClientError::Connect {
            server: target.to_string(),
            source,
        })?;
    Ok(GrpcNodeClient::new(channel))
}

/// Opens a Node API channel to `address` (one HOST:PORT), to the first of
/// the addresses it resolves to that answers: for a tool that talks to one
/// server.
pub async fn connect(
    address: &str,
    tls: Arc<rustls::ClientConfig>,
) -> Result<NodeClient, NodeClientError> {
    let targets = ServerAddresses::parse(address)?.resolve().await?;
    Ok(first_answering(targets.iter(), &tls).await?.0)
}

/// A channel to the first of `targets` that answers, each tried in turn.
pub(super) async fn first_answering<'a>(
    targets: impl Iterator<Item = &'a Target>,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(NodeClient, &'a Target), NodeClientError> {
    let mut tried = 0;
    let mut last = None;
    for target in targets {
        tried += 1;
        match connect_to(target, tls.clone()).await {
            Ok(client) => return Ok((client, target)),
            Err(error) => {
                tracing::warn!(server = %target, %error, "server unreachable; trying the next");
                last = Some(error);
            }
        }
    }
    Err(NodeClientError::NoServer {
        tried,
        last: last.map(Box::new),
    })
}
