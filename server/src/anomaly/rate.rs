//! `issuance_rate`: SVIDs an agent has signed per window against its own
//! moving baseline (an exponentially weighted mean of past windows). Once
//! the agent has `baseline_windows` windows of history, a window whose
//! count exceeds both `factor` times the baseline and `min` is a finding,
//! once per window.

use std::collections::HashMap;
use std::time::Duration;

use signet_core::SpiffeId;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub window: Duration,
    pub baseline_windows: u32,
    pub factor: f64,
    pub min: u64,
}

#[derive(Debug)]
struct History {
    window_start: Instant,
    count: u64,
    baseline: f64,
    windows: u32,
    fired: bool,
}

/// Agents idle longer than this many windows are forgotten (their next
/// window starts a fresh history).
const FORGET_AFTER_WINDOWS: u32 = 1000;

#[derive(Debug)]
pub struct IssuanceRate {
    rule: Rule,
    agents: HashMap<SpiffeId, History>,
}

impl IssuanceRate {
    pub fn new(rule: Rule) -> Self {
        Self {
            rule,
            agents: HashMap::new(),
        }
    }

    /// Counts `n` SVIDs for `agent`; `Some(detail)` when this makes its
    /// current window unusual.
    pub fn issued(&mut self, agent: &SpiffeId, n: u64, now: Instant) -> Option<String> {
        let rule = self.rule;
        let h = self.agents.entry(agent.clone()).or_insert(History {
            window_start: now,
            count: 0,
            baseline: 0.0,
            windows: 0,
            fired: false,
        });
        roll(h, &rule, now);
        h.count = h.count.saturating_add(n);
        let limit = (rule.factor * h.baseline).max(rule.min as f64);
        if h.windows >= rule.baseline_windows && !h.fired && h.count as f64 > limit {
            h.fired = true;
            return Some(format!(
                "{} SVIDs in {}s against a baseline of {:.1} per window (limit {:.0})",
                h.count,
                rule.window.as_secs_f64(),
                h.baseline,
                limit
            ));
        }
        None
    }

    /// Agents tracked (bounded by those that issued lately).
    pub fn tracked(&self) -> usize {
        self.agents.len()
    }

    /// Drops agents idle for [`FORGET_AFTER_WINDOWS`] windows.
    pub fn forget_idle(&mut self, now: Instant) {
        let idle = self.rule.window.saturating_mul(FORGET_AFTER_WINDOWS);
        self.agents
            .retain(|_, h| now.saturating_duration_since(h.window_start) < idle);
    }
}

/// Closes the windows that ended before `now` into the baseline.
fn roll(h: &mut History, rule: &Rule, now: Instant) {
    let alpha = 2.0 / (f64::from(rule.baseline_windows.max(1)) + 1.0);
    let mut rolled = 0u32;
    while now.saturating_duration_since(h.window_start) >= rule.window {
        h.baseline = if h.windows == 0 {
            h.count as f64
        } else {
            alpha * h.count as f64 + (1.0 - alpha) * h.baseline
        };
        h.windows = h.windows.saturating_add(1);
        h.count = 0;
        h.fired = false;
        h.window_start += rule.window;
        rolled += 1;
        if rolled >= FORGET_AFTER_WINDOWS {
            // Long idle: the baseline has decayed to nothing anyway.
            h.baseline = 0.0;
            h.window_start = now;
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Rule = Rule {
        window: Duration::from_secs(60),
        baseline_windows: 3,
        factor: 10.0,
        min: 100,
    };

    fn agent() -> SpiffeId {
        SpiffeId::parse("spiffe://example.org/signet/agent/a").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_cold_start_without_history_is_not_a_finding() {
        let mut d = IssuanceRate::new(RULE);
        assert_eq!(d.issued(&agent(), 10_000, Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_spike_over_the_baseline_is_found_once_per_window() {
        let mut d = IssuanceRate::new(RULE);
        let a = agent();
        for _ in 0..3 {
            assert_eq!(d.issued(&a, 20, Instant::now()), None);
            tokio::time::advance(RULE.window).await;
        }
        // 20 per window: the limit is max(10 x 20, 100) = 200.
        assert_eq!(d.issued(&a, 200, Instant::now()), None);
        let found = d.issued(&a, 1, Instant::now()).unwrap();
        assert!(
            found.starts_with("201 SVIDs in 60s against a baseline of 20.0"),
            "{found}"
        );
        assert_eq!(d.issued(&a, 1000, Instant::now()), None);
        // Steady traffic at the old rate is normal again.
        tokio::time::advance(RULE.window * 20).await;
        assert_eq!(d.issued(&a, 20, Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_minimum_keeps_quiet_agents_quiet() {
        let mut d = IssuanceRate::new(RULE);
        let a = agent();
        for _ in 0..3 {
            d.issued(&a, 1, Instant::now());
            tokio::time::advance(RULE.window).await;
        }
        assert_eq!(d.issued(&a, 90, Instant::now()), None);
        tokio::time::advance(RULE.window * (FORGET_AFTER_WINDOWS + 1)).await;
        d.forget_idle(Instant::now());
        assert_eq!(d.tracked(), 0);
    }
}
