//! Exponential backoff with jitter for reconnecting to the server and for
//! retrying failed SVID requests, so a fleet of agents does not retry in step.

use std::time::Duration;

/// Doubles from `base` up to `max`; each delay is drawn from the upper half
/// of the current step ("equal jitter"), so it never drops below half.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The delay before the next attempt, with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        use rand::Rng;
        let unit: f64 = rand::thread_rng().gen_range(0.0..=1.0);
        self.next_delay_with(unit)
    }

    /// The delay before the next attempt; `unit` in [0, 1] picks where in
    /// the jitter window it falls (0: half the step, 1: the full step).
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let step = self.current_step();
        self.attempt = self.attempt.saturating_add(1);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            1.0
        };
        step.mul_f64(0.5 + 0.5 * unit)
    }

    /// Call after a success: the next failure starts again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn current_step(&self) -> Duration {
        let factor = 2u32.checked_pow(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }
}

impl Default for Backoff {
    /// 500 ms doubling up to 30 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn delays_double_until_the_cap() {
        let mut b = Backoff::new(ms(100), ms(1000));
        let got: Vec<Duration> = (0..6).map(|_| b.next_delay_with(1.0)).collect();
        assert_eq!(
            got,
            vec![ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );

        let start = Instant::now();
        tokio::time::sleep(b.next_delay_with(1.0)).await;
        assert_eq!(start.elapsed(), ms(1000));
    }

    #[test]
    fn jitter_stays_between_half_and_full_step() {
        let mut lowest = Backoff::new(ms(100), ms(1000));
        assert_eq!(lowest.next_delay_with(0.0), ms(50));
        assert_eq!(lowest.next_delay_with(0.0), ms(100));
        for _ in 0..200 {
            let mut b = Backoff::new(ms(100), ms(1000));
            for step in [100u64, 200, 400, 800, 1000, 1000] {
                let d = b.next_delay();
                assert!(d >= ms(step / 2) && d <= ms(step), "{d:?} for step {step}");
            }
        }
    }

    #[test]
    fn reset_starts_over_from_base() {
        let mut b = Backoff::new(ms(100), ms(1000));
        for _ in 0..10 {
            b.next_delay_with(1.0);
        }
        b.reset();
        assert_eq!(b.next_delay_with(1.0), ms(100));
    }

    #[test]
    fn many_attempts_never_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(b.next_delay_with(1.0) <= Duration::from_secs(30));
        }
    }
}
