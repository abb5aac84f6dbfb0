//! One `StreamSecrets` stream, xDS state of the world: nothing is sent
//! before Envoy's first request; then every response carries a new
//! `version_info` (a counter) and `nonce`, and a new one is sent whenever
//! the requested secrets change: a rotation, a bundle update, a different
//! list of names. A request must answer the last nonce sent, or it is
//! stale and ignored. One with an `error_detail` is a NACK: it is logged
//! and the stream goes on (the same secrets would be refused again; the
//! next change is sent as usual). The stream ends with "no identity
//! issued" when the caller loses all its entries, or with the reason when
//! it asks for a name it has nothing for.

use std::collections::{BTreeSet, HashSet};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use futures::StreamExt;
use signet_core::rotation::wait_until;
use signet_core::Selector;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::resources::{self, Ask, SdsState};
use super::{check_type_url, STREAM_SECRETS};
use crate::attest::workload::PeerInfo;
use crate::workload_api::{x509, WorkloadApi};

/// Who is streaming.
pub struct Caller {
    pub api: WorkloadApi,
    pub selectors: HashSet<Selector>,
    pub peer: PeerInfo,
}

/// What the stream last asked for and was sent.
#[derive(Default)]
struct Subscription {
    names: Option<BTreeSet<String>>,
    node: Option<Node>,
    version: u64,
    nonce: Option<String>,
    sent: Option<Vec<Secret>>,
    /// Until when SVIDs still being issued for the names are waited for.
    grace_ends: Option<tokio::time::Instant>,
}

impl Subscription {
    /// The response for `secrets` under the next version and nonce.
    fn respond(&mut self, secrets: Vec<Secret>) -> DiscoveryResponse {
        self.version += 1;
        let nonce = format!("{:x}", self.version);
        self.nonce = Some(nonce.clone());
        let response = DiscoveryResponse {
            version_info: self.version.to_string(),
            resources: resources::encode(&secrets),
            type_url: resources::secret_type_url(),
            nonce,
            ..DiscoveryResponse::default()
        };
        self.sent = Some(secrets);
        response
    }
}

type Tx = mpsc::Sender<Result<DiscoveryResponse, Status>>;

pub async fn run(caller: Caller, mut requests: Streaming<DiscoveryRequest>, tx: Tx) {
    let mut cache = caller.api.cache.clone();
    let mut sub = Subscription::default();
    let mut recorded = false;
    loop {
        // What the current subscription resolves to now; nothing before
        // the first request.
        let mut expiry = None;
        let mut pending = false;
        if let Some(names) = &sub.names {
            let snapshot = cache.borrow_and_update().clone();
            let now = caller.api.clock.now();
            let names: Vec<String> = names.iter().cloned().collect();
            let ask = Ask {
                names: &names,
                spiffe_validator: resources::supports_spiffe_validator(sub.node.as_ref()),
                settings: &caller.api.sds,
            };
            let state = resources::state(&snapshot, &caller.selectors, now, &ask);
            let refused = match state {
                Ok(SdsState::Ready { secrets, served }) => {
                    if sub.sent.as_ref() != Some(&secrets) {
                        if !recorded {
                            caller.record(served, None);
                            recorded = true;
                        }
                        let response = sub.respond(secrets);
                        tracing::debug!(uid = caller.peer.uid, version = %response.version_info, resources = response.resources.len(), "SDS update");
                        if tx.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                    None
                }
                Ok(SdsState::Pending)
                    if sub.sent.is_none()
                        && sub
                            .grace_ends
                            .is_some_and(|g| tokio::time::Instant::now() < g) =>
                {
                    pending = true;
                    None
                }
                Ok(SdsState::Pending | SdsState::NoIdentity) => Some(x509::no_identity()),
                Err(status) => Some(status),
            };
            if let Some(status) = refused {
                caller.record(vec![], Some(&status));
                let _ = tx.send(Err(status)).await;
                return;
            }
            expiry = x509::identities(&snapshot, &caller.selectors, now).and_then(|ids| {
                ids.iter()
                    .map(|(_, svid)| wait_until(now, svid.x509.not_after))
                    .min()
            });
        } else {
            // Cache changes mean nothing before the first request.
            cache.borrow_and_update();
        }
        tokio::select! {
            request = requests.next() => match request {
                Some(Ok(request)) => {
                    if let Err(status) = sub.take(request, caller.peer.uid) {
                        caller.record(vec![], Some(&status));
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
                // Envoy hung up (or the connection broke).
                Some(Err(_)) | None => return,
            },
            changed = cache.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
            _ = x509::sleep_opt(expiry) => {}
            _ = x509::sleep_until_opt(sub.grace_ends.filter(|_| pending)) => {}
        }
    }
}

impl Subscription {
    /// Takes one request: a new name list replaces the subscription (and
    /// clears what was sent, so it is answered); an ACK or NACK of the
    /// last response changes nothing else; a stale nonce is ignored.
    fn take(&mut self, request: DiscoveryRequest, uid: u32) -> Result<(), Status> {
        check_type_url(&request.type_url)?;
        if let Some(error) = &request.error_detail {
            tracing::warn!(uid, version = %request.version_info, nonce = %request.response_nonce, error = %error.message, "Envoy rejected the secrets sent (NACK)");
        }
        if let Some(nonce) = &self.nonce {
            if request.response_nonce != *nonce {
                tracing::debug!(uid, nonce = %request.response_nonce, expected = %nonce, "stale SDS request ignored");
                return Ok(());
            }
        }
        if request.node.is_some() {
            self.node = request.node;
        }
        let names: BTreeSet<String> = request
            .resource_names
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect();
        if self.names.as_ref() != Some(&names) {
            self.names = Some(names);
            self.sent = None;
            self.grace_ends = Some(tokio::time::Instant::now() + x509::ISSUE_GRACE);
        }
        Ok(())
    }
}

impl Caller {
    fn record(&self, served: Vec<String>, refused: Option<&Status>) {
        self.api.record(
            STREAM_SECRETS,
            Some(&self.peer),
            &self.selectors,
            served,
            refused,
        );
    }
}
