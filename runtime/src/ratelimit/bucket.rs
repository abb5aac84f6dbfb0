//! One token bucket: refills continuously at its rate up to its burst.

use std::time::Duration;

use tokio::time::Instant;

use super::{Exhausted, Rate, THROTTLE_SHARE};

#[derive(Debug, Clone)]
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
    throttled_until: Option<Instant>,
}

impl Bucket {
    pub(super) fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            at: now,
            throttled_until: None,
        }
    }

    /// Refill and capacity now, a throttle counted while it lasts.
    fn effective(&mut self, rate: Rate, now: Instant) -> (f64, f64) {
        let share = match self.throttled_until {
            Some(until) if now < until => THROTTLE_SHARE,
            Some(_) => {
                self.throttled_until = None;
                1.0
            }
            None => 1.0,
        };
        let per_second = rate.per_second * share;
        let capacity = (f64::from(rate.burst) * share).max(1.0);
        (per_second, capacity)
    }

    fn refill(&mut self, rate: Rate, now: Instant) -> (f64, f64) {
        let (per_second, capacity) = self.effective(rate, now);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(capacity);
        self.at = now;
        (per_second, capacity)
    }

    pub(super) fn take(&mut self, rate: Rate, n: u32, now: Instant) -> Result<(), Exhausted> {
        let (per_second, capacity) = self.refill(rate, now);
        let need = f64::from(n).min(capacity);
        if self.tokens >= need {
            self.tokens -= need;
            return Ok(());
        }
        let wait = (need - self.tokens) / per_second;
        Err(Exhausted {
            retry_after: Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX),
        })
    }

    pub(super) fn throttle(&mut self, rate: Rate, until: Instant, now: Instant) {
        self.refill(rate, now);
        self.throttled_until = Some(until);
        let (_, capacity) = self.effective(rate, now);
        self.tokens = self.tokens.min(capacity);
    }

    pub(super) fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        let (_, capacity) = self.refill(rate, now);
        self.throttled_until.is_none() && self.tokens >= capacity
    }
}
