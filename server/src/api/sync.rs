//! The Sync stream of one agent. A new stream (or one whose
//! `since_revision` the server no longer covers) starts with a snapshot of
//! its entries, the bundle, the revocations, CRLs, tainted authorities and
//! authorization policies; a
//! stream that resumes from a revision still in the event log gets only the
//! events after it (or, if none, one empty message at the current
//! revision). Then each change that concerns the agent, as it is published.
//! A subscriber that falls behind gets a fresh snapshot; a banned or
//! evicted agent's stream, or one opened with an SVID that is then revoked,
//! ends with `PermissionDenied`.

use std::collections::BTreeSet;
use std::sync::Arc;

use signet_core::clock::unix_seconds;
use signet_core::SpiffeId;
use signet_proto::node::{
    revoked_credential, CrlSet, PolicySource, RevokedCredential, SyncResponse, TaintedAuthorities,
};
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::convert::{node_bundle, node_entry};
use super::status::ApiError;
use super::ServerState;
use crate::datastore::{AgentRecord, PolicyRecord, Revocation, RevokedKind};
use crate::events::{Change, Event, Resume};

type Tx = mpsc::Sender<Result<SyncResponse, Status>>;

/// Entries per snapshot message: about 200 KB, far below any gRPC limit.
const SNAPSHOT_PART: usize = 1000;

/// Starts the stream for `agent`; messages arrive on the returned receiver.
/// `svid_serial` is the SVID the agent opened the stream with.
pub fn start(
    state: ServerState,
    agent: AgentRecord,
    svid_serial: String,
    since: u64,
) -> mpsc::Receiver<Result<SyncResponse, Status>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        // Subscribe before reading anything, so no change can fall between.
        let (events, current, resume) = state.bus.resume(since).await;
        let _connected = state.metrics.agent_connected();
        let scope = Scope {
            agent: &agent,
            svid_serial: &svid_serial,
            members: BTreeSet::new(),
        };
        if let Err(e) = run(&state, scope, events, current, resume, &tx).await {
            let _ = tx.send(Err(e.into())).await;
        }
    });
    rx
}

/// The stream's view of the agent: its ID, the SVID it opened the stream
/// with, and the aliases it belongs to.
struct Scope<'a> {
    agent: &'a AgentRecord,
    svid_serial: &'a str,
    members: BTreeSet<SpiffeId>,
}

impl Scope<'_> {
    fn covers(&self, parent: &SpiffeId) -> bool {
        parent == &self.agent.spiffe_id || self.members.contains(parent)
    }

    /// Recomputes alias membership; true when it changed.
    async fn refresh(&mut self, state: &ServerState) -> Result<bool, ApiError> {
        let members = crate::alias::aliases_of(state.ds.as_ref(), self.agent).await?;
        let changed = members != self.members;
        self.members = members;
        Ok(changed)
    }
}

fn is_alias_change(event: &Event) -> bool {
    matches!(&event.change, Change::EntryCreated(r) | Change::EntryDeleted(r) if r.node)
}

/// An authority or CRL event is committed (here or by another server) a
/// moment before this server publishes what it changed: the message must
/// carry it. (A revocation goes out at once; the CRLs it changes follow in
/// the `CrlsChanged` of the server whose CA signed the credential.)
async fn caught_up(state: &ServerState, event: &Event) {
    match &event.change {
        Change::BundleChanged | Change::TaintedChanged => state.ca.caught_up(event.revision).await,
        Change::CrlsChanged => state.revocations.caught_up(event.revision).await,
        _ => {}
    }
}

fn revokes(event: &Event, agent: &SpiffeId) -> bool {
    matches!(&event.change, Change::AgentRevoked { agent_id, .. } if agent_id == agent)
}

fn node_revocation(r: &Revocation) -> RevokedCredential {
    RevokedCredential {
        credential: Some(match r.kind {
            RevokedKind::X509 => revoked_credential::Credential::X509Serial(r.id.clone()),
            RevokedKind::Jwt => revoked_credential::Credential::JwtId(r.id.clone()),
        }),
        expires_at: r.expires_at,
        reason: r.reason.clone(),
    }
}

fn node_policy(p: &PolicyRecord) -> PolicySource {
    PolicySource {
        name: p.name.clone(),
        text: p.text.clone(),
    }
}

fn crls(state: &ServerState) -> CrlSet {
    CrlSet {
        crls: state.revocations.crls(),
    }
}

fn tainted(state: &ServerState) -> TaintedAuthorities {
    let (x509, jwt_kids) = state.ca.tainted();
    TaintedAuthorities { x509, jwt_kids }
}

/// Sends a snapshot at `revision` (every event up to it is reflected: events
/// are published after their change is committed), each part as soon as it
/// has been read; one part is held back until the next shows whether more
/// follow (`snapshot_continues`).
async fn snapshot(
    state: &ServerState,
    scope: &Scope<'_>,
    revision: u64,
    tx: &Tx,
) -> Result<bool, ApiError> {
    let revocations = state.ds.revocations(unix_seconds(state.ca.now())).await?;
    let federated = state.ds.federated_bundles().await?;
    let policies = state.ds.policies().await?;
    let mut parts = crate::alias::entries_for(
        state.ds.clone(),
        scope.agent.spiffe_id.clone(),
        scope.members.clone(),
        SNAPSHOT_PART,
    );
    let mut msg = SyncResponse {
        revision,
        snapshot: true,
        entries: vec![],
        removed_entry_ids: vec![],
        bundle: Some(node_bundle(&state.ca.bundle())),
        revocations: revocations.iter().map(node_revocation).collect(),
        crls: Some(crls(state)),
        tainted: Some(tainted(state)),
        server_time_ms: 0,
        snapshot_continues: false,
        federated_bundles: federated.iter().map(|f| node_bundle(&f.bundle)).collect(),
        removed_federated_bundles: vec![],
        policies: policies.iter().map(node_policy).collect(),
        removed_policies: vec![],
        policies_complete: true,
    };
    let mut held = parts.recv().await.transpose()?;
    loop {
        let next = match held {
            Some(_) => parts.recv().await.transpose()?,
            None => None,
        };
        msg.entries = held.unwrap_or_default().iter().map(node_entry).collect();
        msg.snapshot_continues = next.is_some();
        // Stamped as it leaves: reading the part may have taken a while.
        msg.server_time_ms = server_time_ms(state);
        if tx.send(Ok(msg)).await.is_err() {
            return Ok(false);
        }
        if next.is_none() {
            return Ok(true);
        }
        held = next;
        msg = SyncResponse {
            revision,
            snapshot: true,
            ..SyncResponse::default()
        };
    }
}

async fn run(
    state: &ServerState,
    mut scope: Scope<'_>,
    mut events: broadcast::Receiver<Arc<Event>>,
    current: u64,
    resume: Resume,
    tx: &Tx,
) -> Result<(), ApiError> {
    let agent_id = &scope.agent.spiffe_id;
    scope.refresh(state).await?;
    let mut last = current;
    // Missed alias changes may have moved whole sets of entries: resend
    // all. A missed eviction of this agent is one it has attested again
    // since (else it could not be here): what it holds is from before.
    let resume = match resume {
        Resume::Events(missed)
            if missed
                .iter()
                .any(|e| is_alias_change(e) || revokes(e, agent_id)) =>
        {
            Resume::Snapshot
        }
        other => other,
    };
    match resume {
        Resume::Snapshot => {
            if !snapshot(state, &scope, current, tx).await? {
                return Ok(());
            }
        }
        Resume::Events(missed) => {
            let mut sent = false;
            for event in &missed {
                caught_up(state, event).await;
                if let Some(msg) = message_for(state, &scope, event)? {
                    if tx.send(Ok(msg)).await.is_err() {
                        return Ok(());
                    }
                    sent = true;
                }
            }
            if !sent {
                // Nothing missed that concerns it: say where we stand.
                let msg = SyncResponse {
                    revision: current,
                    server_time_ms: server_time_ms(state),
                    ..Default::default()
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    let mut shutdown = state.shutdown.clone();
    // An event taken while batching that belongs in a message of its own.
    let mut held: Option<Arc<Event>> = None;
    loop {
        let event = match held.take() {
            Some(e) => Ok(e),
            None => tokio::select! {
                _ = tx.closed() => return Ok(()),
                _ = shutdown.wait_for(|stop| *stop) => {
                    return Err(ApiError::Unavailable("server is shutting down".into()));
                }
                e = events.recv() => e,
            },
        };
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::info!(agent = %agent_id, missed = n, "sync stream fell behind; resending a snapshot");
                let (fresh, rev) = state.bus.subscribe();
                events = fresh;
                scope.refresh(state).await?;
                if !snapshot(state, &scope, rev, tx).await? {
                    return Ok(());
                }
                last = rev;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        if event.revision <= last {
            continue;
        }
        if is_alias_change(&event) {
            // Membership moved: the agent's whole entry set may have changed.
            if scope.refresh(state).await? {
                tracing::info!(agent = %agent_id, aliases = ?scope.members, "node alias membership changed; resending a snapshot");
                last = event.revision;
                if !snapshot(state, &scope, event.revision, tx).await? {
                    return Ok(());
                }
            }
            continue;
        }
        caught_up(state, &event).await;
        let Some(mut msg) = message_for(state, &scope, &event)? else {
            continue;
        };
        last = event.revision;
        held = batch_waiting(state, &scope, &mut events, &mut msg, &mut last);
        if tx.send(Ok(msg)).await.is_err() {
            return Ok(());
        }
    }
}

/// Entries per batched message, like a snapshot part.
const BATCH_ENTRIES: usize = SNAPSHOT_PART;

/// What a message changes, for batching: only messages of one kind merge,
/// so the agent applies changes in the order they were made.
#[derive(PartialEq, Eq)]
enum Kind {
    Added,
    Removed,
    Other,
}

fn kind(msg: &SyncResponse) -> Kind {
    let only_entries = msg.bundle.is_none()
        && msg.revocations.is_empty()
        && msg.crls.is_none()
        && msg.tainted.is_none()
        && msg.federated_bundles.is_empty()
        && msg.removed_federated_bundles.is_empty()
        && msg.policies.is_empty()
        && msg.removed_policies.is_empty();
    match (msg.entries.len(), msg.removed_entry_ids.len()) {
        (1.., 0) if only_entries => Kind::Added,
        (0, 1..) if only_entries => Kind::Removed,
        _ => Kind::Other,
    }
}

/// Merges into `msg` the entry changes of its kind that are already waiting
/// (a batch of 10k new entries is 10 messages, not 10k, so what follows it,
/// e.g. a ban, is not queued behind them). Returns an event that stopped the
/// batch, to be handled on its own next.
fn batch_waiting(
    state: &ServerState,
    scope: &Scope<'_>,
    events: &mut broadcast::Receiver<Arc<Event>>,
    msg: &mut SyncResponse,
    last: &mut u64,
) -> Option<Arc<Event>> {
    let batching = kind(msg);
    if batching == Kind::Other {
        return None;
    }
    while msg.entries.len() + msg.removed_entry_ids.len() < BATCH_ENTRIES {
        // Empty, lagged or closed: the next `recv` says which.
        let Ok(next) = events.try_recv() else {
            return None;
        };
        if next.revision <= *last {
            continue;
        }
        if is_alias_change(&next) {
            return Some(next);
        }
        match message_for(state, scope, &next) {
            Ok(None) => {}
            Ok(Some(m)) if kind(&m) == batching => {
                msg.entries.extend(m.entries);
                msg.removed_entry_ids.extend(m.removed_entry_ids);
            }
            // Another kind of change, or one that ends the stream.
            Ok(Some(_)) | Err(_) => return Some(next),
        }
        *last = next.revision;
        msg.revision = next.revision;
    }
    None
}

/// The message this agent gets for `event`, if it concerns the agent.
fn message_for(
    state: &ServerState,
    scope: &Scope<'_>,
    event: &Event,
) -> Result<Option<SyncResponse>, ApiError> {
    let agent_id = &scope.agent.spiffe_id;
    let base = SyncResponse {
        revision: event.revision,
        server_time_ms: server_time_ms(state),
        ..Default::default()
    };
    Ok(match &event.change {
        Change::EntryCreated(rec) if !rec.node && scope.covers(&rec.entry.parent_id) => {
            Some(SyncResponse {
                entries: vec![node_entry(rec)],
                ..base
            })
        }
        // The agent replaces the entry it holds under the same id.
        Change::EntryUpdated(rec) if !rec.node && scope.covers(&rec.entry.parent_id) => {
            Some(SyncResponse {
                entries: vec![node_entry(rec)],
                ..base
            })
        }
        Change::FederatedBundleSet(rec) => Some(SyncResponse {
            federated_bundles: vec![node_bundle(&rec.bundle)],
            ..base
        }),
        Change::FederatedBundleRemoved(td) => Some(SyncResponse {
            removed_federated_bundles: vec![td.to_string()],
            ..base
        }),
        // Every agent decides by every policy.
        Change::PolicySet(rec) => Some(SyncResponse {
            policies: vec![node_policy(rec)],
            ..base
        }),
        Change::PolicyRemoved(name) => Some(SyncResponse {
            removed_policies: vec![name.clone()],
            ..base
        }),
        Change::EntryDeleted(rec) if !rec.node && scope.covers(&rec.entry.parent_id) => {
            Some(SyncResponse {
                removed_entry_ids: vec![rec.entry.id.clone()],
                ..base
            })
        }
        Change::BundleChanged => Some(SyncResponse {
            bundle: Some(node_bundle(&state.ca.bundle())),
            ..base
        }),
        Change::Revoked(r) if r.kind == RevokedKind::X509 && r.id == scope.svid_serial => {
            return Err(super::auth::revoked_svid(agent_id, scope.svid_serial));
        }
        Change::Revoked(r) => Some(SyncResponse {
            revocations: vec![node_revocation(r)],
            crls: (r.kind == RevokedKind::X509).then(|| crls(state)),
            ..base
        }),
        Change::CrlsChanged => Some(SyncResponse {
            crls: Some(crls(state)),
            ..base
        }),
        Change::TaintedChanged => Some(SyncResponse {
            tainted: Some(tainted(state)),
            ..base
        }),
        Change::AgentRevoked {
            agent_id: id,
            banned,
        } if id == agent_id => {
            return Err(ApiError::PermissionDenied(if *banned {
                format!("agent {id} is banned")
            } else {
                format!("agent {id} was evicted; attest again")
            }));
        }
        _ => None,
    })
}

/// The server's clock in Unix milliseconds, for the agent's skew report.
fn server_time_ms(state: &ServerState) -> i64 {
    state
        .ca
        .now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
