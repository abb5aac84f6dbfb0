//! The Sync stream from the server: a snapshot of the entries this agent is
//! authorized for, the bundle, the bundles of federated trust domains,
//! revocations, CRLs and tainted authorities, then deltas as they happen. Each message goes to the cache manager; bundle
//! changes also update the bundle the TLS verifier trusts and the copy on
//! disk; taints also reach the agent SVID renewal. When the stream breaks it
//! resumes from the last revision seen, on the next server of the group at
//! once (every server numbers the same history), with backoff and jitter
//! only once all of them have failed in a row. A `PermissionDenied` end
//! means the agent was banned or evicted: everything is dropped and it never
//! retries.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use signet_core::bundle::Bundle;
use signet_core::Clock;
use signet_proto::node::SyncRequest;
use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;
use crate::cache::SyncUpdate;
use crate::health::{measure_skew, Health, Status};
use crate::node_client::{NodeConnector, Pacing, Session};
use crate::storage::Storage;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync stream: {:?}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("the cache manager stopped")]
    Closed,
    /// The agent attested again under a new ID: the stream of the old one
    /// is left for one of its own.
    #[error("the agent has a new ID")]
    NewIdentity,
}

pub struct SyncTask {
    pub connector: Arc<NodeConnector>,
    pub updates: mpsc::Sender<SyncUpdate>,
    pub bundle: watch::Sender<Arc<Vec<Vec<u8>>>>,
    /// Tainted X.509 authority ids, for the agent SVID renewal.
    pub tainted_x509: watch::Sender<BTreeSet<String>>,
    pub storage: Storage,
    pub health: Health,
    pub clock: Arc<dyn Clock>,
    /// Resume from here (the revision of the cache loaded from disk).
    pub start_revision: u64,
}

/// Reconnect delays: 500 ms doubling to a 30 s cap, reset by any message.
pub fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
}

impl SyncTask {
    /// Streams forever, reconnecting after errors or a closed stream; parks
    /// for good once the server has cut the agent off.
    pub async fn run(self) {
        let mut pacing = Pacing::new(reconnect_backoff());
        let mut revision = self.start_revision;
        let mut agent = self.connector.agent_id();
        loop {
            let session = match self.connector.session().await {
                Ok(session) => session,
                Err(e) => {
                    tracing::warn!(error = %e, revision, "no server to sync with; retrying");
                    tokio::time::sleep(pacing.after_failure()).await;
                    continue;
                }
            };
            let server = &session.server;
            // Attested again under a new ID (a new join token): its history
            // is not the old one's; a snapshot replaces what the cache held.
            let now_agent = self.connector.agent_id();
            if now_agent != agent {
                tracing::info!(old = %agent, new = %now_agent, "new agent ID; syncing from a snapshot");
                agent = now_agent;
                revision = 0;
            }
            let delay = match self.stream_once(&session, &mut revision, &mut pacing).await {
                Err(SyncError::Closed) => return,
                Err(SyncError::NewIdentity) => Duration::ZERO,
                Err(SyncError::Status(s)) if s.code() == tonic::Code::PermissionDenied => {
                    self.cut_off(s.message()).await;
                    return std::future::pending().await;
                }
                Ok(()) => {
                    // A server that ends the stream is going away (a
                    // shutdown drains its streams): resume on another.
                    tracing::warn!(%server, revision, "sync stream closed by the server; resuming on the next");
                    self.connector.failed(session.epoch);
                    pacing.after_server_failure(self.connector.server_count())
                }
                Err(SyncError::Status(s)) => {
                    tracing::warn!(%server, code = ?s.code(), message = s.message(), revision, "sync stream failed; resuming");
                    if self.connector.report(session.epoch, &s) {
                        pacing.after_server_failure(self.connector.server_count())
                    } else {
                        pacing.after_failure()
                    }
                }
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// Banned or evicted: drop every SVID, forget the dead identity so a
    /// restart does not try it again, and say what to do.
    async fn cut_off(&self, server_said: &str) {
        let (status, message) = cut_off_report(server_said);
        tracing::error!(server_said, "{message}");
        self.health.set_status(status, message.clone());
        let _ = self
            .updates
            .send(SyncUpdate {
                cut_off: Some(message),
                ..Default::default()
            })
            .await;
        if let Err(e) = self.storage.forget_identity() {
            tracing::error!(error = %e, "cannot remove the agent identity from the data dir");
        }
        self.connector.disconnect();
    }

    async fn stream_once(
        &self,
        session: &Session,
        revision: &mut u64,
        pacing: &mut Pacing,
    ) -> Result<(), SyncError> {
        let mut client = session.client.clone();
        let mut stream = client
            .sync(SyncRequest {
                since_revision: *revision,
                // The server compares it with its own clock (clock_skew).
                agent_time_unix_ms: self
                    .clock
                    .now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            })
            .await?
            .into_inner();
        // The parts of a snapshot received so far.
        let mut partial: Option<SyncUpdate> = None;
        let agent = self.connector.agent_id();
        loop {
            let message = tokio::select! {
                m = stream.message() => m?,
                () = self.connector.identity_changed(&agent) => return Err(SyncError::NewIdentity),
            };
            let Some(message) = message else { break };
            pacing.reset();
            self.health.mark_reached_server();
            if let Some(skew) = measure_skew(message.server_time_ms, self.clock.now()) {
                self.health.record_skew(skew);
            }
            let continues = message.snapshot && message.snapshot_continues;
            let mut part = update_from_proto(message);
            if continues {
                // Issuing for these entries need not wait for the rest.
                self.updates
                    .send(part.split_preview())
                    .await
                    .map_err(|_| SyncError::Closed)?;
            }
            let update = match partial.take() {
                Some(mut so_far) => {
                    so_far.absorb(part);
                    so_far
                }
                None => part,
            };
            if continues {
                partial = Some(update);
                continue;
            }
            // Only a whole snapshot moves the resume point.
            *revision = update.revision;
            if let Some(bundle) = &update.bundle {
                self.bundle_changed(bundle);
            }
            if let Some(tainted) = &update.tainted {
                self.tainted_x509.send_if_modified(|t| {
                    let changed = *t != tainted.x509;
                    t.clone_from(&tainted.x509);
                    changed
                });
            }
            self.updates
                .send(update)
                .await
                .map_err(|_| SyncError::Closed)?;
        }
        Ok(())
    }

    fn bundle_changed(&self, bundle: &Bundle) {
        let bundle = bundle.x509_authorities.as_slice();
        if bundle.is_empty() {
            return;
        }
        let changed = self.bundle.send_if_modified(|current| {
            if current.as_slice() == bundle {
                false
            } else {
                *current = Arc::new(bundle.to_vec());
                true
            }
        });
        if changed {
            tracing::info!(authorities = bundle.len(), "trust bundle updated");
            if let Err(e) = self.storage.save_bundle(bundle) {
                tracing::error!(error = %e, "cannot persist trust bundle");
            }
        }
    }
}

/// What to report when the server refuses the agent with `PermissionDenied`.
pub fn cut_off_report(server_said: &str) -> (Status, String) {
    if server_said.to_ascii_lowercase().contains("banned") {
        (
            Status::Banned,
            format!(
                "agent banned by the server ({server_said}): every SVID was dropped and the Workload API serves nothing; the agent does not retry with this identity; to bring the host back, attest it as a new agent: restart with --join-token NEW_TOKEN"
            ),
        )
    } else {
        (
            Status::Evicted,
            format!(
                "agent evicted by the server ({server_said}): every SVID was dropped; a new join token is needed: restart the agent with --join-token TOKEN"
            ),
        )
    }
}

mod parse;
pub use parse::{
    bundle_from_proto, entry_from_proto, federates_with_from_names, jwt_authorities_from_proto,
    revocations_from_proto, update_from_proto,
};

#[cfg(test)]
mod tests;
