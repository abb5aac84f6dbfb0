//! SVID metrics derived from the published cache: a new serial on an entry
//! is an issuance (and a rotation when the entry held one before); held and
//! time to the next expiry are recomputed on every change and every few
//! seconds (expiry moves with the clock, not with the cache).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_core::Clock;
use tokio::sync::watch;

use super::Metrics;
use crate::cache::Snapshot;

/// Entry id → serial of the SVID it holds.
type Serials = BTreeMap<String, String>;

fn serials(snapshot: &Snapshot) -> Serials {
    snapshot
        .entries
        .iter()
        .filter_map(|(id, c)| c.svid.as_ref().map(|s| (id.clone(), s.serial_hex.clone())))
        .collect()
}

/// Counts what changed from `before` to `after`.
pub fn count_changes(metrics: &Metrics, before: &Serials, after: &Serials) {
    for (id, serial) in after {
        match before.get(id) {
            Some(old) if old == serial => {}
            Some(_) => {
                metrics.svids_issued.inc();
                metrics.svid_rotations.inc();
            }
            None => {
                metrics.svids_issued.inc();
            }
        }
    }
}

pub fn update_gauges(metrics: &Metrics, snapshot: &Snapshot, now: SystemTime) {
    let valid: Vec<SystemTime> = snapshot
        .entries
        .values()
        .filter_map(|c| c.svid.as_ref())
        .filter(|s| s.is_valid_at(now))
        .map(|s| s.not_after)
        .collect();
    metrics
        .svids_held
        .set(i64::try_from(valid.len()).unwrap_or(i64::MAX));
    let next = valid
        .iter()
        .min()
        .and_then(|t| t.duration_since(now).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    metrics.seconds_to_next_expiry.set(next);
}

/// Follows the cache until it closes. SVIDs already held at start (loaded
/// from disk) are not counted as issued.
pub async fn follow(
    metrics: Arc<Metrics>,
    mut cache: watch::Receiver<Arc<Snapshot>>,
    clock: Arc<dyn Clock>,
) {
    let mut known = serials(&cache.borrow_and_update());
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        let snapshot = cache.borrow_and_update().clone();
        let now_serials = serials(&snapshot);
        count_changes(&metrics, &known, &now_serials);
        known = now_serials;
        update_gauges(&metrics, &snapshot, clock.now());
        tokio::select! {
            changed = cache.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serials_of(pairs: &[(&str, &str)]) -> Serials {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn new_serials_count_as_issued_and_replacements_as_rotations() {
        let m = Metrics::new();
        let empty = Serials::new();
        let one = serials_of(&[("e1", "aa")]);
        let two = serials_of(&[("e1", "aa"), ("e2", "bb")]);
        let rotated = serials_of(&[("e1", "cc"), ("e2", "bb")]);
        count_changes(&m, &empty, &one);
        count_changes(&m, &one, &two);
        count_changes(&m, &two, &two);
        count_changes(&m, &two, &rotated);
        assert_eq!(m.svids_issued.get(), 3);
        assert_eq!(m.svid_rotations.get(), 1);
    }
}
