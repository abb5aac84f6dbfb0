//! Renewal of the agent's own SVID: at half-life, or at once when its
//! authority is tainted; on whichever server of the group answers (a call
//! that finds its server dead is asked of the next), with backoff only once
//! none does.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rcgen::KeyPair;
use signet_core::rotation::{random_jitter, refresh_at, wait_until};
use signet_core::x509::{build_csr, validate_x509_svid};
use signet_core::Clock;
use signet_proto::node::RenewAgentRequest;
use tokio::sync::watch;

use super::{finish_svid, pick_authority, NodeAttestError};
use crate::attest::AgentSvid;
use crate::backoff::Backoff;
use crate::health::{Health, Status};
use crate::node_client::{BundleRx, CallError, NodeConnector};
use crate::storage::{Storage, StoredIdentity};

/// Everything the agent SVID renewal needs.
pub struct RenewLoop {
    pub connector: Arc<NodeConnector>,
    pub storage: Storage,
    pub bundle: BundleRx,
    pub svid_tx: watch::Sender<Arc<AgentSvid>>,
    pub tainted: watch::Receiver<BTreeSet<String>>,
    pub health: Health,
    pub clock: Arc<dyn Clock>,
}

impl RenewLoop {
    /// Renews the agent SVID at half-life (jittered), or at once when its
    /// authority is tainted, publishing each new SVID so the Node API clients
    /// reconnect with it. Stops for good once the agent is cut off.
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let current = self.svid_tx.borrow().clone();
            let at = refresh_at(current.received_at, current.x509.not_after, random_jitter());
            let wait = wait_until(self.clock.now(), at);
            let mut cut_off = self.health.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = self.tainted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !self.tainted.borrow_and_update().contains(&*current.x509.authority_id) {
                        continue;
                    }
                    tracing::warn!(authority_id = &*current.x509.authority_id, "the agent SVID's authority is tainted; renewing at once");
                }
                _ = async { cut_off.wait_for(|r| r.is_cut_off()).await.is_ok() } => {
                    return std::future::pending().await
                }
            }
            loop {
                if self.health.report().is_cut_off() {
                    return std::future::pending().await;
                }
                match renew_once(&self.connector, &current, &self.bundle, self.clock.as_ref()).await
                {
                    Ok(svid) => {
                        let saved = self.storage.save_identity(&StoredIdentity {
                            key_pkcs8: svid.key_pkcs8.clone(),
                            chain: svid.x509.chain.clone(),
                        });
                        if let Err(e) = saved {
                            tracing::error!(error = %e, "cannot persist renewed agent SVID");
                        }
                        tracing::info!(spiffe_id = %svid.x509.spiffe_id, authority_id = &*svid.x509.authority_id, not_after = signet_core::clock::unix_seconds(svid.x509.not_after), "agent SVID renewed");
                        self.svid_tx.send_replace(Arc::new(svid));
                        if self.health.report().status == Status::AgentSvidExpired {
                            self.health.set_status(Status::Healthy, "");
                        }
                        backoff.reset();
                        break;
                    }
                    Err(e) => {
                        let expired = self.clock.now() >= current.x509.not_after;
                        tracing::warn!(error = %e, expired, "agent SVID renewal failed; retrying");
                        if expired {
                            self.health.set_status(
                                Status::AgentSvidExpired,
                                format!(
                                    "the agent SVID {} expired before it could be renewed ({e}); if the server keeps refusing it, restart the agent with a new --join-token",
                                    current.x509.spiffe_id
                                ),
                            );
                        }
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
            }
        }
    }
}

async fn renew_once(
    connector: &NodeConnector,
    current: &AgentSvid,
    bundle: &BundleRx,
    clock: &dyn Clock,
) -> Result<AgentSvid, NodeAttestError> {
    let key = KeyPair::generate().map_err(signet_core::x509::X509Error::from)?;
    let csr = build_csr(&key, &current.x509.spiffe_id)?;
    let request = RenewAgentRequest { csr };
    let response = connector
        .call(|mut client| {
            let request = request.clone();
            async move { client.renew_agent(request).await }
        })
        .await
        .map_err(|e| match e {
            CallError::Connect(e) => NodeAttestError::Connect(e),
            CallError::Status { status, .. } => super::refused(status),
        })?;
    let chain = response.svid_chain;
    let now = clock.now();
    let bundle = bundle.borrow().clone();
    let id = validate_x509_svid(&chain, &bundle, now)?;
    if id != current.x509.spiffe_id {
        return Err(NodeAttestError::Protocol(format!(
            "renewed SVID is for {id}, expected {}",
            current.x509.spiffe_id
        )));
    }
    let mut svid = finish_svid(id, chain, &key, now, current.generation.wrapping_add(1))?;
    svid.x509.authority_id =
        pick_authority(response.authority_id, &svid.x509.chain, &bundle, now).into();
    Ok(svid)
}
