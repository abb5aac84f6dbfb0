//! SVIDs this server issued per minute over the last hour, for the
//! overview's chart: the issuance counters sampled once a minute.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::telemetry::Metrics;

const MINUTES: usize = 60;

#[derive(Debug, Default)]
pub struct Activity {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Whole minutes, oldest first.
    minutes: VecDeque<u64>,
    /// The counters' total at the last sample.
    last_total: u64,
}

impl Activity {
    fn sample(&self, total: u64) {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let done = total.saturating_sub(i.last_total);
        i.last_total = total;
        i.minutes.push_back(done);
        while i.minutes.len() > MINUTES - 1 {
            i.minutes.pop_front();
        }
    }

    /// The last hour by minute, oldest first, ending with the minute under
    /// way (so far); minutes before this server started count zero.
    pub fn per_minute(&self, total_now: u64) -> Vec<u64> {
        let i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = vec![0; MINUTES.saturating_sub(i.minutes.len() + 1)];
        out.extend(i.minutes.iter().copied());
        out.push(total_now.saturating_sub(i.last_total));
        out
    }
}

/// Samples `metrics` every minute until `stop`.
pub async fn run(activity: Arc<Activity>, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    activity
        .inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .last_total = metrics.svids_issued_total();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => activity.sample(metrics.svids_issued_total()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_deltas_and_the_current_one_is_partial() {
        let a = Activity::default();
        a.sample(10);
        a.sample(25);
        let got = a.per_minute(30);
        assert_eq!(got.len(), MINUTES);
        assert_eq!(got[MINUTES - 3..], [10, 15, 5]);
        for t in 0..100 {
            a.sample(100 + t);
        }
        assert_eq!(a.per_minute(199).len(), MINUTES);
    }
}
