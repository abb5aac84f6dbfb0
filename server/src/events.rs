//! The change bus: every change an agent may care about (entries, the bundle,
//! bans and evictions) is published once, with a revision that increases on
//! every event, and fanned out to every Sync stream without polling.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use signet_core::SpiffeId;
use tokio::sync::broadcast;

use crate::datastore::{DataStore, EntryRecord, Revocation};

/// How many events a slow subscriber may fall behind before it is told to
/// resynchronise from a fresh snapshot.
pub(crate) const CAPACITY: usize = 1024;

/// How many recent events are kept for streams that resume.
pub const LOG_SIZE: usize = 10_000;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub revision: u64,
    pub change: Change,
}

struct Inner {
    revision: u64,
    /// The most recent events, oldest first.
    log: VecDeque<Arc<Event>>,
    /// Every event after this revision is in `log`.
    log_floor: u64,
}

/// Where a resuming stream stands.
pub enum Resume {
    /// The events it missed (possibly none), in order.
    Events(Vec<Arc<Event>>),
    /// Too old or unknown: it needs a snapshot.
    Snapshot,
}

#[derive(Clone)]
pub struct ChangeBus {
    tx: broadcast::Sender<Arc<Event>>,
    inner: Arc<Mutex<Inner>>,
    // Held while numbering, persisting and sending, so revisions go out in
    // order.
    publishing: Arc<tokio::sync::Mutex<()>>,
    store: Option<Arc<dyn DataStore>>,
}

impl std::fmt::Debug for ChangeBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeBus")
            .field("revision", &self.current_revision())
            .finish_non_exhaustive()
    }
}

impl ChangeBus {
    /// An in-memory bus starting after `start`.
    pub fn new(start: u64) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self {
            tx,
            inner: Arc::new(Mutex::new(Inner {
                revision: start,
                log: VecDeque::new(),
                log_floor: start,
            })),
            publishing: Arc::new(tokio::sync::Mutex::new(())),
            store: None,
        }
    }

    /// A bus whose every revision is stored in `ds` before it is sent, so
    /// revisions keep increasing across restarts (even after kill -9).
    pub async fn persistent(ds: Arc<dyn DataStore>) -> crate::datastore::Result<Self> {
        let start = ds.current_revision().await?;
        let mut bus = Self::new(start);
        bus.store = Some(ds);
        Ok(bus)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn publish(&self, change: Change) -> u64 {
        self.publish_all(vec![change]).await
    }

    /// Publishes `changes` in order, one revision each, storing all their
    /// revisions with one datastore write; returns the last revision.
    pub async fn publish_all(&self, changes: Vec<Change>) -> u64 {
        let _order = self.publishing.lock().await;
        let count = changes.len() as u64;
        if count == 0 {
            return self.current_revision();
        }
        let mut last = self.current_revision() + count;
        if let Some(ds) = &self.store {
            match ds.bump_revision(count).await {
                Ok(stored) => last = last.max(stored),
                Err(e) => tracing::warn!(error = %e, "storing the event revision failed"),
            }
        }
        let mut inner = self.lock();
        for (revision, change) in (last + 1 - count..).zip(changes) {
            let event = Arc::new(Event { revision, change });
            inner.revision = revision;
            inner.log.push_back(event.clone());
            while inner.log.len() > LOG_SIZE {
                if let Some(old) = inner.log.pop_front() {
                    inner.log_floor = old.revision;
                }
            }
            // No subscribers is fine: nobody is listening yet.
            let _ = self.tx.send(event);
        }
        last
    }

    /// A receiver of every event after now, and the revision it starts after.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<Event>>, u64) {
        let inner = self.lock();
        (self.tx.subscribe(), inner.revision)
    }

    /// Like [`subscribe`](Self::subscribe), plus what a stream that last saw
    /// `since` missed, taken atomically with the subscription.
    pub fn resume(&self, since: u64) -> (broadcast::Receiver<Arc<Event>>, u64, Resume) {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let resume = if since == 0 || since < inner.log_floor || since > inner.revision {
            Resume::Snapshot
        } else {
            Resume::Events(
                inner
                    .log
                    .iter()
                    .filter(|e| e.revision > since)
                    .cloned()
                    .collect(),
            )
        };
        (rx, inner.revision, resume)
    }

    pub fn current_revision(&self) -> u64 {
        self.lock().revision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_every_later_event_in_revision_order() {
        let bus = ChangeBus::new(10);
        let (mut rx, start) = bus.subscribe();
        assert_eq!(start, 10);
        bus.publish(Change::BundleChanged).await;
        bus.publish(Change::TaintedChanged).await;
        assert_eq!(rx.recv().await.unwrap().revision, 11);
        assert_eq!(rx.recv().await.unwrap().revision, 12);
        assert_eq!(bus.current_revision(), 12);
    }

    #[tokio::test]
    async fn a_batch_publishes_one_event_per_change_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let ds: Arc<dyn DataStore> = Arc::new(
            crate::datastore::SqliteDataStore::open(&dir.path().join("ds.sqlite3"))
                .await
                .unwrap(),
        );
        let bus = ChangeBus::persistent(ds.clone()).await.unwrap();
        let (mut rx, start) = bus.subscribe();
        let last = bus
            .publish_all(vec![
                Change::BundleChanged,
                Change::TaintedChanged,
                Change::CrlsChanged,
            ])
            .await;
        assert_eq!(last, start + 3);
        let mut got = Vec::new();
        for _ in 0..3 {
            let e = rx.recv().await.unwrap();
            got.push((e.revision, e.change.clone()));
        }
        assert_eq!(
            got,
            [
                (start + 1, Change::BundleChanged),
                (start + 2, Change::TaintedChanged),
                (start + 3, Change::CrlsChanged),
            ]
        );
        assert_eq!(ds.current_revision().await.unwrap(), last);
        assert!(matches!(bus.resume(start + 1).2, Resume::Events(ev) if ev.len() == 2));
        assert_eq!(bus.publish_all(vec![]).await, last);
    }

    #[tokio::test]
    async fn resume_returns_only_later_events_or_asks_for_a_snapshot() {
        let bus = ChangeBus::new(10);
        for _ in 0..3 {
            bus.publish(Change::BundleChanged).await;
        }
        let (_, cur, r) = bus.resume(11);
        assert_eq!(cur, 13);
        let Resume::Events(ev) = r else { panic!() };
        assert_eq!(ev.iter().map(|e| e.revision).collect::<Vec<_>>(), [12, 13]);
        let (_, _, r) = bus.resume(13);
        assert!(matches!(r, Resume::Events(ev) if ev.is_empty()));
        // Never seen anything, before this process's log, or from the future.
        assert!(matches!(bus.resume(0).2, Resume::Snapshot));
        assert!(matches!(bus.resume(9).2, Resume::Snapshot));
        assert!(matches!(bus.resume(14).2, Resume::Snapshot));
        // The log floor moves once the log is full.
        for _ in 0..LOG_SIZE {
            bus.publish(Change::TaintedChanged).await;
        }
        assert!(matches!(bus.resume(11).2, Resume::Snapshot));
        assert!(matches!(bus.resume(13).2, Resume::Events(ev) if ev.len() == LOG_SIZE));
    }

    #[tokio::test]
    async fn persistent_revisions_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ds.sqlite3");
        let ds: Arc<dyn DataStore> =
            Arc::new(crate::datastore::SqliteDataStore::open(&db).await.unwrap());
        let bus = ChangeBus::persistent(ds.clone()).await.unwrap();
        bus.publish(Change::BundleChanged).await;
        let last = bus.publish(Change::BundleChanged).await;
        drop(bus);
        drop(ds);
        let ds: Arc<dyn DataStore> =
            Arc::new(crate::datastore::SqliteDataStore::open(&db).await.unwrap());
        let bus = ChangeBus::persistent(ds).await.unwrap();
        assert_eq!(bus.current_revision(), last);
        // A stream that saw everything resumes with nothing to catch up on.
        assert!(matches!(bus.resume(last).2, Resume::Events(ev) if ev.is_empty()));
        assert!(bus.publish(Change::BundleChanged).await > last);
    }
}
