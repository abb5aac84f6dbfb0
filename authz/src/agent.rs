//! The policies of the local Signet agent, for a service that decides
//! in-process: `AgentPolicies::connect` opens the agent's `FetchPolicies`
//! stream on its Workload API socket (the service must be an attested
//! workload there) and keeps an [`Engine`] current with every change the
//! agent pushes; a lost stream is reopened. A set that does not validate
//! here never replaces the one held.

use std::path::Path;
use std::time::{Duration, SystemTime};

use signet_core::{SpiffeId, TrustDomain};
use signet_proto::authz::authorization_client::AuthorizationClient;
use signet_proto::authz::{FetchPoliciesRequest, PolicySet};
use signet_proto::uds::workload_request;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_proto::workload::ValidateJwtsvidRequest;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::peer::{Peer, PeerError};
use crate::{Engine, Policies, PolicySource};

/// How long to wait before reopening a lost stream.
const RECONNECT: Duration = Duration::from_secs(1);

/// The agent's current policies as an engine, and its trust domain.
#[derive(Clone)]
struct Held {
    engine: Engine,
    trust_domain: Option<TrustDomain>,
}

pub struct AgentPolicies {
    held: watch::Receiver<Held>,
    channel: Channel,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AgentPolicies {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn channel(socket: &Path) -> Result<Channel, PeerError> {
    signet_proto::uds::channel(socket)
        .await
        .map_err(|e| PeerError::Agent(format!("{}: {e}", socket.display())))
}

/// The set as an engine, unless a source does not validate.
fn held(set: &PolicySet) -> Option<Held> {
    let sources: Vec<PolicySource> = set
        .sources
        .iter()
        .map(|s| PolicySource {
            name: s.name.clone(),
            text: s.text.clone(),
        })
        .collect();
    let policies = Policies::build(&sources).ok()?;
    Some(Held {
        engine: Engine::new(policies),
        trust_domain: TrustDomain::new(&set.trust_domain).ok(),
    })
}

async fn open(channel: &Channel) -> Result<tonic::Streaming<PolicySet>, tonic::Status> {
    let mut client = AuthorizationClient::new(channel.clone());
    Ok(client
        .fetch_policies(workload_request(FetchPoliciesRequest {}))
        .await?
        .into_inner())
}

/// Follows the stream, reopening it when it ends, until `tx` has no
/// receiver.
async fn follow(
    channel: Channel,
    mut stream: tonic::Streaming<PolicySet>,
    tx: watch::Sender<Held>,
) {
    loop {
        while let Ok(Some(set)) = stream.message().await {
            if let Some(h) = held(&set) {
                if tx.send(h).is_err() {
                    return;
                }
            }
        }
        loop {
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(RECONNECT).await;
            if let Ok(s) = open(&channel).await {
                stream = s;
                break;
            }
        }
    }
}

impl AgentPolicies {
    /// Connects to the agent at `socket` and waits for its policy set.
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Self, PeerError> {
        let channel = channel(socket.as_ref()).await?;
        let mut stream = open(&channel)
            .await
            .map_err(|s| PeerError::Agent(format!("FetchPolicies: {}", s.message())))?;
        let first = stream
            .message()
            .await
            .map_err(|s| PeerError::Agent(format!("FetchPolicies: {}", s.message())))?
            .ok_or_else(|| PeerError::Agent("FetchPolicies ended at once".into()))?;
        let first = held(&first)
            .ok_or_else(|| PeerError::Agent("the agent's policies do not validate".into()))?;
        let (tx, rx) = watch::channel(first);
        let task = tokio::spawn(follow(channel.clone(), stream, tx));
        Ok(Self {
            held: rx,
            channel,
            task,
        })
    }

    /// The current policies (cheap: shared).
    pub fn engine(&self) -> Engine {
        self.held.borrow().engine.clone()
    }

    /// The agent's trust domain.
    pub fn trust_domain(&self) -> Option<TrustDomain> {
        self.held.borrow().trust_domain.clone()
    }

    /// Resolves when the agent pushed a new set.
    pub async fn changed(&mut self) -> Result<(), PeerError> {
        self.held
            .changed()
            .await
            .map_err(|_| PeerError::Agent("the policy stream ended".into()))
    }

    /// A JWT-SVID a peer presented, validated by the agent for `audience`;
    /// its lifetime left counted from `now`.
    pub async fn jwt_peer(
        &self,
        token: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<Peer, PeerError> {
        let mut client = SpiffeWorkloadApiClient::new(self.channel.clone());
        let r = client
            .validate_jwtsvid(workload_request(ValidateJwtsvidRequest {
                audience: audience.to_owned(),
                svid: token.to_owned(),
            }))
            .await
            .map_err(|s| PeerError::Jwt(s.message().to_owned()))?
            .into_inner();
        let spiffe_id =
            SpiffeId::parse_with_path(&r.spiffe_id).map_err(|e| PeerError::Jwt(e.to_string()))?;
        let exp = r
            .claims
            .and_then(|c| c.fields.get("exp").cloned())
            .and_then(|v| match v.kind {
                Some(prost_types::value::Kind::NumberValue(n)) if n.is_finite() && n >= 0.0 => {
                    Some(n)
                }
                _ => None,
            });
        Ok(Peer {
            spiffe_id,
            svid_remaining: exp.and_then(|e| {
                (SystemTime::UNIX_EPOCH + Duration::from_secs_f64(e))
                    .duration_since(now)
                    .ok()
            }),
        })
    }
}
