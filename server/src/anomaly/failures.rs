//! `attestation_failures`: refused node attestations counted per source
//! address and per join token in fixed windows; reaching `threshold` in one
//! window is a finding, once per window and subject.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub threshold: u32,
    pub window: Duration,
}

#[derive(Debug)]
struct Count {
    since: Instant,
    n: u32,
}

/// Subjects tracked at most; beyond it the oldest windows are dropped.
const MAX_SUBJECTS: usize = 100_000;

#[derive(Debug)]
pub struct AttestationFailures {
    rule: Rule,
    counts: HashMap<String, Count>,
}

impl AttestationFailures {
    pub fn new(rule: Rule) -> Self {
        Self {
            rule,
            counts: HashMap::new(),
        }
    }

    /// One refusal concerning `subject` (`address 10.0.0.7` or `token
    /// ab12...`); `Some(detail)` when it reaches the threshold.
    pub fn refused(&mut self, subject: &str, now: Instant) -> Option<String> {
        let window = self.rule.window;
        if self.counts.len() >= MAX_SUBJECTS && !self.counts.contains_key(subject) {
            self.counts
                .retain(|_, c| now.saturating_duration_since(c.since) < window);
        }
        let c = self
            .counts
            .entry(subject.to_owned())
            .or_insert(Count { since: now, n: 0 });
        if now.saturating_duration_since(c.since) >= window {
            *c = Count { since: now, n: 0 };
        }
        c.n = c.n.saturating_add(1);
        (c.n == self.rule.threshold).then(|| {
            format!(
                "{} refused attestations for {subject} within {}s",
                c.n,
                window.as_secs()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_threshold_within_a_window_is_found_once() {
        let mut d = AttestationFailures::new(Rule {
            threshold: 3,
            window: Duration::from_secs(60),
        });
        assert_eq!(d.refused("address 10.0.0.7", Instant::now()), None);
        assert_eq!(d.refused("address 10.0.0.7", Instant::now()), None);
        assert_eq!(d.refused("address 10.0.0.8", Instant::now()), None);
        let found = d.refused("address 10.0.0.7", Instant::now()).unwrap();
        assert_eq!(
            found,
            "3 refused attestations for address 10.0.0.7 within 60s"
        );
        assert_eq!(d.refused("address 10.0.0.7", Instant::now()), None);
        // Spread over windows: never three in one.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(d.refused("address 10.0.0.7", Instant::now()), None);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(d.refused("address 10.0.0.7", Instant::now()), None);
        assert_eq!(d.refused("address 10.0.0.7", Instant::now()), None);
    }
}
