//! The agent's gRPC client for the server's Node API over mTLS: a tonic
//! channel on a custom connector (TCP + tokio-rustls with our SPIFFE server
//! verifier), rebuilt whenever the agent's own SVID is renewed, and moved to
//! the next server of the HA group when the one in use fails.

pub mod addresses;
mod channel;
pub mod failover;
#[cfg(test)]
mod tests;
pub mod tls;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use signet_core::{SpiffeId, TrustDomain};
use signet_proto::node::node_client::NodeClient as GrpcNodeClient;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::attest::AgentSvid;
use crate::health::Health;
pub use addresses::{AddressError, ResolveError, ServerAddresses, Target};
use channel::first_answering;
pub use channel::{connect, connect_to, CONNECT_TIMEOUT};
pub use failover::Pacing;
pub use tls::{BundleRx, ServerTrust, TlsError};

pub type NodeClient = GrpcNodeClient<Channel>;

#[derive(Debug, thiserror::Error)]
pub enum NodeClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("cannot connect to server {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot connect to server {server}: no TLS session within {}s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout { server: String },
    #[error("no server answered ({tried} tried){}", .last.as_ref().map(|e| format!("; the last: {e}")).unwrap_or_default())]
    NoServer {
        tried: usize,
        #[source]
        last: Option<Box<NodeClientError>>,
    },
    #[error("invalid server address: {0}")]
    Address(#[from] AddressError),
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

/// Whether a call's `status` says the server, or the way to it, failed
/// (so another server of the group may answer), rather than that the
/// request was refused (which every server would refuse alike).
pub fn is_server_failure(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unavailable
            | Unknown
            | Cancelled
            | DeadlineExceeded
            | Aborted
            | ResourceExhausted
            | Internal
    )
}

/// Why a [`NodeConnector::call`] got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Connect(#[from] NodeClientError),
    /// The server refused, or every server tried failed (`server_failed`:
    /// asking again later may succeed).
    #[error("{:?}: {}", .status.code(), .status.message())]
    Status {
        status: tonic::Status,
        server_failed: bool,
    },
}

/// Which channel a user got: each channel the connector builds has the next
/// epoch, so a failure reported about an older one moves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Epoch(u64);

/// A client on the current channel, the channel's epoch (to report its
/// failure with) and the server it leads to.
#[derive(Clone)]
pub struct Session {
    pub client: NodeClient,
    pub epoch: Epoch,
    pub server: Target,
}

/// Hands out mTLS clients authenticated with the agent's current SVID to
/// the server in use, shared by every user (sync, SVID issuing, JWT
/// minting, renewal); reconnects once the SVID has been renewed and moves
/// to the next server when a user reports the current one failed.
pub struct NodeConnector {
    servers: ServerAddresses,
    server_id: SpiffeId,
    bundle: BundleRx,
    svid: watch::Receiver<Arc<AgentSvid>>,
    health: Option<Health>,
    /// One connect round at a time: users who find no usable channel wait
    /// for the round in progress and share its channel, instead of each
    /// building one (and each moving the agent along).
    connecting: tokio::sync::Mutex<()>,
    /// Held for a few instructions at a time, never across an await.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    /// The last epoch handed out.
    epochs: u64,
    /// Servers in the group at the last resolution.
    servers: usize,
}

struct Current {
    epoch: Epoch,
    svid_generation: u64,
    client: NodeClient,
    server: Target,
    /// A user reported this channel's server failed: the next round starts
    /// at the server after it.
    failed: bool,
}

impl NodeConnector {
    pub fn new(
        servers: ServerAddresses,
        server_id: SpiffeId,
        bundle: BundleRx,
        svid: watch::Receiver<Arc<AgentSvid>>,
    ) -> Self {
        let state = State {
            servers: servers.len(),
            ..State::default()
        };
        Self {
            servers,
            server_id,
            bundle,
            svid,
            health: None,
            connecting: tokio::sync::Mutex::new(()),
            state: Mutex::new(state),
        }
    }

    /// Reports the server in use in the health file.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// The agent's ID, as its current SVID names it.
    pub fn agent_id(&self) -> signet_core::SpiffeId {
        self.svid.borrow().x509.spiffe_id.clone()
    }

    /// Resolves once the agent holds an SVID for another ID than `id` (it
    /// attested again with a new join token); never if it cannot change.
    pub async fn identity_changed(&self, id: &signet_core::SpiffeId) {
        let mut svid = self.svid.clone();
        if svid.wait_for(|s| &s.x509.spiffe_id != id).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The current channel, or a new one: to the same server after an SVID
    /// renewal, to the next that answers after a failure; the error when
    /// none of the group answers (then wait before asking again).
    pub async fn session(&self) -> Result<Session, NodeClientError> {
        if let Some(session) = self.usable(self.svid.borrow().generation) {
            return Ok(session);
        }
        let _round = self.connecting.lock().await;
        let svid = self.svid.borrow().clone();
        // The round we waited for may have left a channel for us.
        if let Some(session) = self.usable(svid.generation) {
            return Ok(session);
        }
        let (from, failed) = {
            let state = self.state();
            state
                .current
                .as_ref()
                .map_or((None, false), |c| (Some(c.server.addr), c.failed))
        };
        let tls = tls::client_config(
            ServerTrust::Bundle(self.bundle.clone()),
            self.server_id.clone(),
            Some(&svid),
        )?;
        let targets = self.servers.resolve().await?;
        self.state().servers = targets.len();
        let order = failover::sweep_order(&targets, from, failed);
        let (client, target) = first_answering(order, &tls).await?;
        Ok(self.install(target.clone(), svid.generation, client))
    }

    /// `call` on the server in use, and while servers fail on the next, at
    /// most once per server of the group: a request made as a server dies
    /// is answered by another instead of failing.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, CallError>
    where
        F: FnMut(NodeClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut left = self.server_count();
        loop {
            let session = self.session().await?;
            let status = match call(session.client).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            let server_failed = self.report(session.epoch, &status);
            left = left.saturating_sub(1);
            if !server_failed || left == 0 {
                return Err(CallError::Status {
                    status,
                    server_failed,
                });
            }
            tracing::debug!(server = %session.server, code = ?status.code(), "asking the next server");
        }
    }

    /// The channel of `epoch` failed. Only the first report about the
    /// current channel counts: users who saw the same dead connection move
    /// the agent by one server together, and a report about a channel
    /// already replaced moves nothing. Returns whether this report counted.
    pub fn failed(&self, epoch: Epoch) -> bool {
        let mut state = self.state();
        match state.current.as_mut() {
            Some(c) if c.epoch == epoch && !c.failed => {
                c.failed = true;
                tracing::warn!(server = %c.server, "the server failed; moving to the next");
                true
            }
            _ => false,
        }
    }

    /// [`failed`](Self::failed) when `status` (from a call on `epoch`'s
    /// channel) is a server failure; returns whether it was one.
    pub fn report(&self, epoch: Epoch, status: &tonic::Status) -> bool {
        // A rate limit's refusal (it carries a retry hint) is the server
        // working as configured: wait, do not move to another.
        let rate_limited = signet_runtime::ratelimit::status::retry_after(status).is_some();
        let server_failed = is_server_failure(status.code()) && !rate_limited;
        if server_failed {
            self.failed(epoch);
        }
        server_failed
    }

    /// Drops the channel (the agent was cut off: nothing more to ask).
    pub fn disconnect(&self) {
        self.state().current = None;
    }

    /// How many servers the group has (at the last resolution).
    pub fn server_count(&self) -> usize {
        self.state().servers.max(1)
    }

    /// The server of the current channel, if any.
    pub fn server(&self) -> Option<Target> {
        self.state().current.as_ref().map(|c| c.server.clone())
    }

    fn usable(&self, svid_generation: u64) -> Option<Session> {
        let state = self.state();
        let c = state.current.as_ref()?;
        (!c.failed && c.svid_generation == svid_generation).then(|| Session {
            client: c.client.clone(),
            epoch: c.epoch,
            server: c.server.clone(),
        })
    }

    fn install(&self, server: Target, svid_generation: u64, client: NodeClient) -> Session {
        let mut state = self.state();
        state.epochs = state.epochs.wrapping_add(1);
        let epoch = Epoch(state.epochs);
        let previous = state.current.replace(Current {
            epoch,
            svid_generation,
            client: client.clone(),
            server: server.clone(),
            failed: false,
        });
        drop(state);
        match previous {
            Some(p) if p.server != server => {
                tracing::info!(server = %server, previous = %p.server, "switched to another server");
            }
            Some(p) if !p.failed => {
                tracing::debug!(server = %server, "reconnected with the renewed agent SVID");
            }
            _ => tracing::info!(server = %server, "connected to the server"),
        }
        if let Some(health) = &self.health {
            health.set_server(server.to_string());
        }
        Session {
            client,
            epoch,
            server,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave `State` half-written: every
        // change is a single assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
