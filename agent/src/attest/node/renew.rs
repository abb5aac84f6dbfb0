//! Renewal of the agent's own SVID: at half-life, or at once when its
//! authority is tainted; on whichever server of the group answers (a call
//! that finds its server dead is asked of the next), with backoff only once
//! none does. An SVID that expired before any server renewed it is
//! replaced by attesting again where the agent can (`reattest`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use signet_core::rotation::{random_jitter, refresh_at_prefetch, wait_until};
use signet_core::x509::validate_x509_svid;
use signet_core::Clock;
use signet_proto::node::RenewAgentRequest;
use tokio::sync::watch;

use super::{finish_svid, pick_authority, NodeAttestError, Reattest};
use crate::attest::key::KeySource;
use crate::attest::AgentSvid;
use crate::backoff::Backoff;
use crate::health::{Health, Status};
use crate::node_client::{BundleRx, CallError, NodeConnector};
use crate::storage::{Storage, StoredIdentity};

/// How long one renewal may take: a server behind a cut link never
/// answers, and the connection is found dead only by keep-alive (~40 s),
/// while an expiring SVID must be reported, and replaced, sooner.
const RENEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the agent SVID renewal needs.
pub struct RenewLoop {
    pub connector: Arc<NodeConnector>,
    pub storage: Storage,
    pub bundle: BundleRx,
    pub svid_tx: watch::Sender<Arc<AgentSvid>>,
    pub tainted: watch::Receiver<BTreeSet<String>>,
    pub health: Health,
    pub clock: Arc<dyn Clock>,
    /// Renew once less than this is left (`svid_prefetch`).
    pub prefetch: Option<Duration>,
    /// How to attest again once the SVID expired unrenewed.
    pub reattest: Reattest,
}

impl RenewLoop {
    /// Renews the agent SVID at half-life (jittered), or at once when its
    /// authority is tainted, publishing each new SVID so the Node API clients
    /// reconnect with it. Stops for good once the agent is cut off.
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let current = self.svid_tx.borrow().clone();
            let at = refresh_at_prefetch(
                current.received_at,
                current.x509.not_after,
                random_jitter(),
                self.prefetch,
            );
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
                let renewal = renew_once(
                    &self.reattest.config.key_source,
                    &self.connector,
                    &current,
                    &self.bundle,
                    self.clock.as_ref(),
                );
                let renewed = tokio::time::timeout(RENEW_TIMEOUT, renewal)
                    .await
                    .unwrap_or(Err(NodeAttestError::Timeout(RENEW_TIMEOUT)));
                match renewed {
                    Ok(svid) => {
                        let saved = self.storage.save_identity(&StoredIdentity {
                            key: svid.key.stored(),
                            chain: svid.x509.chain.clone(),
                        });
                        if let Err(e) = saved {
                            tracing::error!(error = %e, "cannot persist renewed agent SVID");
                        }
                        tracing::info!(spiffe_id = %svid.x509.spiffe_id, authority_id = &*svid.x509.authority_id, not_after = signet_core::clock::unix_seconds(svid.x509.not_after), "agent SVID renewed");
                        self.replace(svid);
                        backoff.reset();
                        break;
                    }
                    Err(e) => {
                        let expired = self.clock.now() >= current.x509.not_after;
                        tracing::warn!(error = %e, expired, "agent SVID renewal failed; retrying");
                        if expired && self.attest_again(&current, &e).await {
                            backoff.reset();
                            break;
                        }
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
            }
        }
    }
}

impl RenewLoop {
    /// Publishes `svid` (the Node API clients reconnect with it).
    fn replace(&self, svid: AgentSvid) {
        self.svid_tx.send_replace(Arc::new(svid));
        if self.health.report().status == Status::AgentSvidExpired {
            self.health.set_status(Status::Healthy, "");
        }
    }

    /// The SVID expired unrenewed (`renewal` says why): attests again if
    /// the agent can; else, or when that fails, the health report says
    /// what an admin must do. True when a new SVID was published.
    async fn attest_again(&mut self, current: &AgentSvid, renewal: &NodeAttestError) -> bool {
        let why = match self
            .reattest
            .attest(&self.bundle, self.clock.as_ref())
            .await
        {
            Ok(attested) => {
                let mut svid = attested.svid;
                svid.generation = current.generation.wrapping_add(1);
                if svid.x509.spiffe_id != current.x509.spiffe_id {
                    tracing::warn!(old = %current.x509.spiffe_id, new = %svid.x509.spiffe_id, "attested again under a new agent ID: its entries come with a fresh sync");
                }
                self.replace(svid);
                return true;
            }
            Err(e) => e,
        };
        tracing::warn!(error = %why, "cannot attest again");
        self.health.set_status(
            Status::AgentSvidExpired,
            format!(
                "the agent SVID {} expired before it could be renewed ({renewal}); attesting again: {why}",
                current.x509.spiffe_id
            ),
        );
        false
    }
}

async fn renew_once(
    keys: &KeySource,
    connector: &NodeConnector,
    current: &AgentSvid,
    bundle: &BundleRx,
    clock: &dyn Clock,
) -> Result<AgentSvid, NodeAttestError> {
    let key = keys.generate().await?;
    let csr = key.csr(&current.x509.spiffe_id).await?;
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
    let mut svid = finish_svid(id, chain, key, now, current.generation.wrapping_add(1))?;
    svid.x509.authority_id =
        pick_authority(response.authority_id, &svid.x509.chain, &bundle, now).into();
    Ok(svid)
}
