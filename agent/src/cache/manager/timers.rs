//! One deadline per entry id, in a priority queue: the manager's loop finds
//! the next deadline and takes the ones that have passed in O(log n) each,
//! instead of scanning all 10k entries on every update and every answer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use tokio::time::Instant;

use crate::cache::state::EntryId;

#[derive(Debug, Default)]
pub(super) struct Timers {
    /// The current deadline of each id.
    at: HashMap<EntryId, Instant>,
    /// Every deadline set, earliest first; one that is no longer in `at`
    /// (moved or removed since) is skipped when it comes up.
    queue: BinaryHeap<Reverse<(Instant, EntryId)>>,
}

impl Timers {
    /// Sets (or moves) the deadline of `id`.
    pub fn set(&mut self, id: &EntryId, at: Instant) {
        if self.at.insert(id.clone(), at) == Some(at) {
            return;
        }
        self.queue.push(Reverse((at, id.clone())));
        // Moved deadlines leave stale items; keep the heap near the live set.
        if self.queue.len() > 2 * self.at.len() + 64 {
            self.queue = self
                .at
                .iter()
                .map(|(id, at)| Reverse((*at, id.clone())))
                .collect();
        }
    }

    pub fn get(&self, id: &str) -> Option<Instant> {
        self.at.get(id).copied()
    }

    pub fn remove(&mut self, id: &str) {
        self.at.remove(id);
        if self.at.is_empty() {
            self.queue.clear();
        }
    }

    /// The earliest deadline.
    pub fn next(&mut self) -> Option<Instant> {
        self.drop_stale();
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the id with the earliest deadline if it is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<EntryId> {
        self.drop_stale();
        let Reverse((at, _)) = self.queue.peek()?;
        if *at > now {
            return None;
        }
        let Reverse((_, id)) = self.queue.pop()?;
        self.at.remove(&*id);
        Some(id)
    }

    /// Gives the heap back to the allocator after a cold start's high-water
    /// mark.
    pub fn shrink_to_fit(&mut self) {
        self.at.shrink_to_fit();
        self.queue.shrink_to_fit();
    }

    fn drop_stale(&mut self) {
        while let Some(Reverse((at, id))) = self.queue.peek() {
            if self.at.get(id) == Some(at) {
                return;
            }
            self.queue.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(s: &str) -> EntryId {
        s.into()
    }

    #[test]
    fn deadlines_come_out_in_order_and_moves_and_removals_count() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut timers = Timers::default();
        timers.set(&id("a"), s(3));
        timers.set(&id("b"), s(1));
        timers.set(&id("c"), s(2));
        timers.set(&id("a"), s(0)); // moved earlier
        timers.set(&id("b"), s(5)); // moved later
        timers.remove("c");
        assert_eq!(timers.next(), Some(s(0)));
        assert_eq!(timers.pop_due(s(4)).as_deref(), Some("a"));
        assert_eq!(timers.pop_due(s(4)), None, "b is due at 5, c is gone");
        assert_eq!(timers.get("b"), Some(s(5)));
        assert_eq!(timers.next(), Some(s(5)));
        assert_eq!(timers.pop_due(s(5)).as_deref(), Some("b"));
        assert_eq!(timers.next(), None);
        assert_eq!(timers.get("b"), None);
    }

    #[test]
    fn setting_the_same_deadline_twice_yields_it_once() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(&id("a"), t0);
        timers.set(&id("a"), t0);
        assert_eq!(timers.pop_due(t0).as_deref(), Some("a"));
        assert_eq!(timers.pop_due(t0), None);
    }

    #[test]
    fn many_moves_keep_the_heap_near_the_live_set() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for i in 0..10_000u64 {
            timers.set(&id("a"), t0 + Duration::from_millis(i));
        }
        assert!(timers.queue.len() <= 2 + 64, "{}", timers.queue.len());
        assert_eq!(timers.next(), Some(t0 + Duration::from_millis(9_999)));
    }
}
