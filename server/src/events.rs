//! The change bus: every change an agent may care about (entries, the bundle,
//! bans and evictions) is published once, with a revision that increases on
//! every event, and fanned out to every Sync stream without polling.

use std::sync::{Arc, Mutex};

use signet_core::SpiffeId;
use tokio::sync::broadcast;

use crate::datastore::EntryRecord;

/// How many events a slow subscriber may fall behind before it is told to
/// resynchronise from a fresh snapshot.
const CAPACITY: usize = 1024;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub revision: u64,
    pub change: Change,
}

#[derive(Debug, Clone)]
pub struct ChangeBus {
    tx: broadcast::Sender<Arc<Event>>,
    // Held while numbering and sending, so subscribers see revisions in order.
    revision: Arc<Mutex<u64>>,
}

impl ChangeBus {
    /// `start` is the revision already reached (e.g. from the datastore), so
    /// revisions keep increasing across restarts.
    pub fn new(start: u64) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self {
            tx,
            revision: Arc::new(Mutex::new(start)),
        }
    }

    pub fn publish(&self, change: Change) -> u64 {
        let mut rev = self.revision.lock().unwrap_or_else(|e| e.into_inner());
        *rev += 1;
        // No subscribers is fine: nobody is listening yet.
        let _ = self.tx.send(Arc::new(Event {
            revision: *rev,
            change,
        }));
        *rev
    }

    /// A receiver of every event after now, and the revision it starts after.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<Event>>, u64) {
        let rev = self.revision.lock().unwrap_or_else(|e| e.into_inner());
        (self.tx.subscribe(), *rev)
    }

    /// Takes a revision number for a message that is not an event (a
    /// snapshot), so every message a subscriber sees has a larger one.
    pub fn next_revision(&self) -> u64 {
        self.publish_nothing()
    }

    fn publish_nothing(&self) -> u64 {
        let mut rev = self.revision.lock().unwrap_or_else(|e| e.into_inner());
        *rev += 1;
        *rev
    }

    pub fn current_revision(&self) -> u64 {
        *self.revision.lock().unwrap_or_else(|e| e.into_inner())
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
        bus.publish(Change::BundleChanged);
        let snap = bus.next_revision();
        bus.publish(Change::BundleChanged);
        assert_eq!(rx.recv().await.unwrap().revision, 11);
        assert_eq!(snap, 12);
        assert_eq!(rx.recv().await.unwrap().revision, 13);
        assert_eq!(bus.current_revision(), 13);
    }
}
