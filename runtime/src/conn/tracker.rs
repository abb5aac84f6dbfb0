//! Counts open connections per peer and in all; a connection is admitted
//! only below both caps and counted until its [`Permit`] drops.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this peer already holds {limit} connections, the most one peer may")]
    PeerLimit { limit: usize },
    #[error("{limit} connections are open, the most this listener takes")]
    TotalLimit { limit: usize },
}

struct Shared<K> {
    per_peer: usize,
    total: usize,
    counts: Mutex<Counts<K>>,
}

struct Counts<K> {
    by_peer: HashMap<K, usize>,
    total: usize,
}

pub struct ConnectionTracker<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for ConnectionTracker<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone> ConnectionTracker<K> {
    /// At most `per_peer` connections of one peer and `total` in all; and
    /// no peer more than a quarter of the total, so one peer alone can never
    /// fill the listener (the total shrinks with a low descriptor limit).
    pub fn new(per_peer: usize, total: usize) -> Self {
        let total = total.max(1);
        Self {
            shared: Arc::new(Shared {
                per_peer: per_peer.min((total / 4).max(1)),
                total,
                counts: Mutex::new(Counts {
                    by_peer: HashMap::new(),
                    total: 0,
                }),
            }),
        }
    }

    /// A permit for one more connection of `peer`, if both caps allow it.
    pub fn admit(&self, peer: K) -> Result<Permit<K>, Refusal> {
        let mut c = self.lock();
        if c.total >= self.shared.total {
            return Err(Refusal::TotalLimit {
                limit: self.shared.total,
            });
        }
        let held = c.by_peer.entry(peer.clone()).or_insert(0);
        if *held >= self.shared.per_peer {
            return Err(Refusal::PeerLimit {
                limit: self.shared.per_peer,
            });
        }
        *held += 1;
        c.total += 1;
        drop(c);
        Ok(Permit {
            shared: self.shared.clone(),
            peer,
        })
    }

    /// The cap of one peer, as applied.
    pub fn per_peer_limit(&self) -> usize {
        self.shared.per_peer
    }

    /// The cap in all.
    pub fn total_limit(&self) -> usize {
        self.shared.total
    }

    /// Connections open now, in all.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Connections `peer` holds now.
    pub fn open_for(&self, peer: &K) -> usize {
        self.lock().by_peer.get(peer).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts<K>> {
        lock(&self.shared)
    }
}

fn lock<K>(shared: &Shared<K>) -> std::sync::MutexGuard<'_, Counts<K>> {
    // Nothing panics while it is held; recover rather than propagate.
    shared.counts.lock().unwrap_or_else(|e| e.into_inner())
}

/// One admitted connection; it stops counting when dropped.
pub struct Permit<K: Hash + Eq> {
    shared: Arc<Shared<K>>,
    peer: K,
}

impl<K: Hash + Eq> Permit<K> {
    pub fn peer(&self) -> &K {
        &self.peer
    }
}

impl<K: Hash + Eq> Drop for Permit<K> {
    fn drop(&mut self) {
        let mut c = lock(&self.shared);
        c.total = c.total.saturating_sub(1);
        if let Some(held) = c.by_peer.get_mut(&self.peer) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                c.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_is_capped_and_others_still_get_in() {
        let t = ConnectionTracker::new(2, 10);
        let a1 = t.admit("a").unwrap();
        let _a2 = t.admit("a").unwrap();
        assert_eq!(t.admit("a").err(), Some(Refusal::PeerLimit { limit: 2 }));
        let _b = t.admit("b").unwrap();
        assert_eq!(t.open_for(&"a"), 2);
        assert_eq!(t.open(), 3);
        drop(a1);
        assert_eq!(t.open_for(&"a"), 1);
        let _a3 = t.admit("a").unwrap();
    }

    #[test]
    fn no_peer_takes_more_than_a_quarter_of_the_total() {
        let t = ConnectionTracker::new(1024, 384);
        assert_eq!(t.per_peer_limit(), 96);
        let _held: Vec<_> = (0..96).map(|_| t.admit("a").unwrap()).collect();
        assert_eq!(t.admit("a").err(), Some(Refusal::PeerLimit { limit: 96 }));
        assert!(t.admit("b").is_ok());
        assert_eq!(ConnectionTracker::<u8>::new(5, 2).per_peer_limit(), 1);
    }

    #[test]
    fn the_total_cap_holds_across_peers_and_frees_on_drop() {
        let t = ConnectionTracker::new(10, 3);
        let held: Vec<_> = (0..3).map(|i| t.admit(i).unwrap()).collect();
        assert_eq!(t.admit(9).err(), Some(Refusal::TotalLimit { limit: 3 }));
        drop(held);
        assert_eq!(t.open(), 0);
        assert_eq!(t.open_for(&0), 0);
        assert!(t.admit(9).is_ok());
    }
}
