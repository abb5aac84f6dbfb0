//! The agent's gRPC client for the server's Node API over mTLS: a tonic
//! channel on a custom connector (TCP + tokio-rustls with our SPIFFE server
//! verifier), rebuilt whenever the agent's own SVID is renewed.

pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use signet_core::{SpiffeId, TrustDomain};
use signet_proto::node::node_client::NodeClient as GrpcNodeClient;
use tokio::net::TcpStream;
use tokio::sync::{watch, Mutex};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::attest::AgentSvid;
pub use tls::{BundleRx, ServerTrust, TlsError};

pub type NodeClient = GrpcNodeClient<Channel>;

/// SNI name; the verifier checks the SPIFFE ID, not DNS names.
const SERVER_NAME: &str = "signet-server";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NodeClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot connect to server at {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("the agent has not attested to the server yet")]
    NotAttested,
}

/// The connector, once the agent holds an identity: the cache and the JWT
/// minter exist (and serve from disk) before attestation has finished.
#[derive(Clone, Default)]
pub struct LateConnector(Arc<std::sync::OnceLock<Arc<NodeConnector>>>);

impl LateConnector {
    pub fn set(&self, connector: Arc<NodeConnector>) {
        if self.0.set(connector).is_err() {
            tracing::warn!("node connector set twice; keeping the first");
        }
    }

    pub fn get(&self) -> Result<&Arc<NodeConnector>, NodeClientError> {
        self.0.get().ok_or(NodeClientError::NotAttested)
    }
}

/// The SPIFFE ID every Signet server presents.
pub fn server_id(td: &TrustDomain) -> Result<SpiffeId, signet_core::SpiffeIdError> {
    td.id("/signet/server")
}

/// Opens a Node API channel to `address` with `tls`.
pub async fn connect(
    address: &str,
    tls: Arc<rustls::ClientConfig>,
) -> Result<NodeClient, NodeClientError> {
    let addr = address.to_owned();
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let addr = addr.clone();
        let tls = TlsConnector::from(tls.clone());
        async move {
            let tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(SERVER_NAME)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let channel = Endpoint::from_static("http://signet-server")
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_with_connector(connector)
        .await
        .map_err(|source| NodeClientError::Connect {
            address: address.to_owned(),
            source,
        })?;
    Ok(GrpcNodeClient::new(channel))
}

/// Hands out mTLS clients authenticated with the agent's current SVID,
/// reconnecting once the SVID has been renewed.
pub struct NodeConnector {
    address: String,
    server_id: SpiffeId,
    bundle: BundleRx,
    svid: watch::Receiver<Arc<AgentSvid>>,
    cached: Mutex<Option<(u64, NodeClient)>>,
}

impl NodeConnector {
    pub fn new(
        address: String,
        server_id: SpiffeId,
        bundle: BundleRx,
        svid: watch::Receiver<Arc<AgentSvid>>,
    ) -> Self {
        Self {
            address,
            server_id,
            bundle,
            svid,
            cached: Mutex::new(None),
        }
    }

    pub async fn client(&self) -> Result<NodeClient, NodeClientError> {
        let svid = self.svid.borrow().clone();
        let mut cached = self.cached.lock().await;
        if let Some((generation, client)) = cached.as_ref() {
            if *generation == svid.generation {
                return Ok(client.clone());
            }
        }
        let tls = tls::client_config(
            ServerTrust::Bundle(self.bundle.clone()),
            self.server_id.clone(),
            Some(&svid),
        )?;
        let client = connect(&self.address, tls).await?;
        *cached = Some((svid.generation, client.clone()));
        Ok(client)
    }

    /// Drops the cached channel so the next call reconnects.
    pub async fn reset(&self) {
        *self.cached.lock().await = None;
    }
}
