//! The change bus: every change an agent may care about (entries, the bundle,
//! bans and evictions, revocations) is an event in the datastore's log,
//! written in the same transaction as the change; its id is the revision.
//! The bus tails that log (told of each commit right after it, reading the
//! log itself for anything it did not hear of) and fans events out to every
//! Sync stream without polling. A window of recent events is kept in memory
//! for streams that resume; older resumes are served from the log.

mod codec;
mod tailer;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use signet_core::{SpiffeId, TrustDomain};
use tokio::sync::{broadcast, oneshot};

use crate::datastore::{EntryRecord, EventLog, FederatedBundleRecord, PolicyRecord, Revocation};
pub use codec::{decode, encode};

/// How many events a slow subscriber may fall behind before it is told to
/// resynchronise from a fresh snapshot: more than one batch of entry
/// creates (10k), so such a batch is sent on, not resnapshotted.
pub(crate) const CAPACITY: usize = 16_384;

/// How many recent events are kept in memory for streams that resume (one
/// further behind replays from the datastore's log, up to [`KEPT_EVENTS`]).
/// Each entry event holds its entry (~0.75 kB): 10,000 of them were 7.5 MB
/// that filled over 8 minutes of the soak's churn and read as a leak.
pub const LOG_SIZE: usize = 1_000;

/// How long a resuming stream waits for this bus to reach a revision the
/// log already holds (see `ChangeBus::reach`).
const REACH: std::time::Duration = std::time::Duration::from_secs(5);

/// How many events the log keeps, and the most a resuming stream is sent
/// from it; a stream further behind gets a snapshot.
pub const KEPT_EVENTS: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    EntryCreated(EntryRecord),
    EntryDeleted(EntryRecord),
    /// The trust bundle changed; readers fetch the current one from the CA.
    BundleChanged,
    /// The agent was banned or evicted; its streams must end.
    AgentRevoked {
        agent_id: SpiffeId,
        banned: bool,
    },
    /// A credential was revoked (and, for X.509, the CRLs changed).
    Revoked(Revocation),
    /// The CRLs changed without a new revocation (pruning, authorities).
    CrlsChanged,
    /// The set of tainted authorities changed.
    TaintedChanged,
    /// An entry's federated trust domains changed (the rest is as before).
    EntryUpdated(EntryRecord),
    /// A federated trust domain's bundle was stored (new or changed).
    FederatedBundleSet(FederatedBundleRecord),
    /// A federated trust domain's bundle was deleted.
    FederatedBundleRemoved(TrustDomain),
    /// A federation relationship was created, changed or deleted.
    FederationChanged,
    /// An authorization policy source was created or replaced.
    PolicySet(PolicyRecord),
    /// An authorization policy source was deleted (its name).
    PolicyRemoved(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub revision: u64,
    pub change: Change,
}

/// What the tailer writes and readers take atomically with a subscription.
struct Window {
    /// The revision of the last event sent.
    revision: u64,
    /// The most recent events, oldest first.
    log: VecDeque<Arc<Event>>,
    /// Every event after this revision is in `log`.
    floor: u64,
}

/// Where a resuming stream stands.
pub enum Resume {
    /// The events it missed (possibly none), in order.
    Events(Vec<Arc<Event>>),
    /// Too old or unknown: it needs a snapshot.
    Snapshot,
}

/// The half the tailer task owns a clone of.
#[derive(Clone)]
struct Shared {
    tx: broadcast::Sender<Arc<Event>>,
    window: Arc<Mutex<Window>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// Sends every event of `events` newer than the last one sent, in order.
    fn push<'a>(&self, events: impl IntoIterator<Item = &'a Arc<Event>>) {
        let mut w = self.lock();
        for event in events {
            if event.revision <= w.revision {
                continue;
            }
            w.revision = event.revision;
            w.log.push_back(event.clone());
            while w.log.len() > LOG_SIZE {
                if let Some(old) = w.log.pop_front() {
                    w.floor = old.revision;
                }
            }
            // No subscribers is fine: nobody is listening yet.
            let _ = self.tx.send(event.clone());
        }
    }
}

#[derive(Clone)]
pub struct ChangeBus {
    shared: Shared,
    log: Arc<dyn EventLog>,
    /// Dropped with the last clone, which stops the tailer.
    _alive: Arc<oneshot::Sender<()>>,
}

impl std::fmt::Debug for ChangeBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeBus")
            .field("revision", &self.current_revision())
            .finish_non_exhaustive()
    }
}

impl ChangeBus {
    /// Starts tailing `log` from its current revision.
    pub async fn start(log: Arc<dyn EventLog>) -> crate::datastore::Result<Self> {
        // Listen before reading where the log stands, so no commit falls
        // between (one heard twice is skipped by revision).
        let commits = log.commits();
        let start = log.current_revision().await?;
        let (tx, _) = broadcast::channel(CAPACITY);
        let shared = Shared {
            tx,
            window: Arc::new(Mutex::new(Window {
                revision: start,
                log: VecDeque::new(),
                floor: start,
            })),
        };
        let (alive, stopped) = oneshot::channel();
        tokio::spawn(tailer::run(shared.clone(), log.clone(), commits, stopped));
        Ok(Self {
            shared,
            log,
            _alive: Arc::new(alive),
        })
    }

    /// A receiver of every event after now, and the revision it starts after.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<Event>>, u64) {
        let w = self.shared.lock();
        (self.shared.tx.subscribe(), w.revision)
    }

    /// Like [`subscribe`](Self::subscribe), plus what a stream that last saw
    /// `since` missed: from memory when recent, else from the log.
    pub async fn resume(&self, since: u64) -> (broadcast::Receiver<Arc<Event>>, u64, Resume) {
        self.reach(since).await;
        let (rx, current, recent) = {
            let w = self.shared.lock();
            let recent = (since >= w.floor && since <= w.revision).then(|| {
                w.log
                    .iter()
                    .filter(|e| e.revision > since)
                    .cloned()
                    .collect::<Vec<_>>()
            });
            (self.shared.tx.subscribe(), w.revision, recent)
        };
        let resume = match recent {
            _ if since == 0 || since > current => Resume::Snapshot,
            Some(events) => Resume::Events(events),
            None if current - since > KEPT_EVENTS => Resume::Snapshot,
            None => self.replay(since, current).await,
        };
        (rx, current, resume)
    }

    /// An agent that moves here from another server of the group may have
    /// seen a revision this bus has not sent yet (it hears of other
    /// servers' commits a moment later): when the log has it, waits (a
    /// little, at most) for the bus to get there, so the agent resumes
    /// instead of being sent a snapshot.
    async fn reach(&self, since: u64) {
        if since <= self.current_revision() {
            return;
        }
        match self.log.current_revision().await {
            Ok(logged) if since <= logged => {}
            _ => return,
        }
        let (mut rx, current) = self.subscribe();
        if current >= since {
            return;
        }
        let reached = async {
            loop {
                match rx.recv().await {
                    Ok(e) if e.revision >= since => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if self.current_revision() >= since {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        };
        let _ = tokio::time::timeout(REACH, reached).await;
    }

    /// The events after `since` up to `current`, if the log still has them
    /// all; a snapshot otherwise (or when the log cannot be read: the
    /// snapshot then says why).
    async fn replay(&self, since: u64, current: u64) -> Resume {
        match self.log.events_floor().await {
            Ok(floor) if floor <= since => {}
            Ok(_) => return Resume::Snapshot,
            Err(e) => {
                tracing::warn!(error = %e, "reading the event log to resume a stream");
                return Resume::Snapshot;
            }
        }
        let wanted = usize::try_from(current - since).unwrap_or(usize::MAX);
        match self.log.events_after(since, wanted).await {
            Ok(mut events) => {
                events.retain(|e| e.revision <= current);
                Resume::Events(events)
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the event log to resume a stream");
                Resume::Snapshot
            }
        }
    }

    /// The revision of the last event sent to subscribers.
    pub fn current_revision(&self) -> u64 {
        self.shared.revision()
    }
}

#[cfg(test)]
mod tests;
