//! The Sync stream of one agent: a snapshot of its entries and the bundle,
//! then each change that concerns it as it is published on the change bus. A
//! subscriber that falls behind gets a fresh snapshot; a banned or evicted
//! agent's stream ends with `PermissionDenied`.

use std::sync::Arc;

use signet_core::SpiffeId;
use signet_proto::node::SyncResponse;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::convert::{node_bundle, node_entry};
use super::status::ApiError;
use super::ServerState;
use crate::events::{Change, Event};

type Tx = mpsc::Sender<Result<SyncResponse, Status>>;

/// Starts the stream for `agent_id`; messages arrive on the returned receiver.
pub fn start(
    state: ServerState,
    agent_id: SpiffeId,
) -> mpsc::Receiver<Result<SyncResponse, Status>> {
    let (tx, rx) = mpsc::channel(64);
    // Subscribe before reading the snapshot, so no change can fall between.
    let (events, _) = state.bus.subscribe();
    tokio::spawn(async move {
        if let Err(e) = run(&state, &agent_id, events, &tx).await {
            let _ = tx.send(Err(e.into())).await;
        }
    });
    rx
}

async fn snapshot(
    state: &ServerState,
    agent_id: &SpiffeId,
    tx: &Tx,
) -> Result<Option<u64>, ApiError> {
    // The revision is taken before reading, so every event numbered below it
    // is already in what we read (events are published after commit).
    let revision = state.bus.next_revision();
    let entries = state.ds.entries_by_parent(agent_id).await?;
    let msg = SyncResponse {
        revision,
        snapshot: true,
        entries: entries.iter().map(node_entry).collect(),
        removed_entry_ids: vec![],
        bundle: Some(node_bundle(&state.ca.bundle())),
        server_time_ms: server_time_ms(state),
        ..Default::default()
    };
    Ok(tx.send(Ok(msg)).await.ok().map(|_| revision))
}

async fn run(
    state: &ServerState,
    agent_id: &SpiffeId,
    mut events: broadcast::Receiver<Arc<Event>>,
    tx: &Tx,
) -> Result<(), ApiError> {
    let Some(mut last) = snapshot(state, agent_id, tx).await? else {
        return Ok(());
    };
    let mut shutdown = state.shutdown.clone();
    loop {
        let event = tokio::select! {
            _ = tx.closed() => return Ok(()),
            _ = shutdown.wait_for(|stop| *stop) => {
                return Err(ApiError::Unavailable("server is shutting down".into()));
            }
            e = events.recv() => e,
        };
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::info!(agent = %agent_id, missed = n, "sync stream fell behind; resending a snapshot");
                match snapshot(state, agent_id, tx).await? {
                    Some(rev) => last = rev,
                    None => return Ok(()),
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        if event.revision <= last {
            continue;
        }
        let Some(msg) = message_for(state, agent_id, &event)? else {
            continue;
        };
        last = event.revision;
        if tx.send(Ok(msg)).await.is_err() {
            return Ok(());
        }
    }
}

/// The message this agent gets for `event`, if it concerns the agent.
fn message_for(
    state: &ServerState,
    agent_id: &SpiffeId,
    event: &Event,
) -> Result<Option<SyncResponse>, ApiError> {
    let base = SyncResponse {
        revision: event.revision,
        server_time_ms: server_time_ms(state),
        ..Default::default()
    };
    Ok(match &event.change {
        Change::EntryCreated(rec) if &rec.entry.parent_id == agent_id => Some(SyncResponse {
            entries: vec![node_entry(rec)],
            ..base
        }),
        Change::EntryDeleted(rec) if &rec.entry.parent_id == agent_id => Some(SyncResponse {
            removed_entry_ids: vec![rec.entry.id.clone()],
            ..base
        }),
        Change::BundleChanged => Some(SyncResponse {
            bundle: Some(node_bundle(&state.ca.bundle())),
            ..base
        }),
        Change::AgentRevoked {
            agent_id: id,
            banned,
        } if id == agent_id => {
            let what = if *banned { "banned" } else { "evicted" };
            return Err(ApiError::PermissionDenied(format!("agent {id} was {what}")));
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
