//! Token-bucket rate limits kept per key (a source address, an agent, a
//! caller's uid), so one noisy caller is slowed down and every other keeps
//! its share. A refusal says when to try again (`status::exhausted`).

mod bucket;
pub mod status;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use bucket::Bucket;

/// How many tokens a key's bucket refills per second and holds at most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Refill per second; 0 turns the limit off.
    pub per_second: f64,
    /// What a quiet key may spend at once.
    pub burst: u32,
}

impl Rate {
    pub const OFF: Rate = Rate {
        per_second: 0.0,
        burst: 0,
    };

    pub fn is_off(&self) -> bool {
        self.per_second <= 0.0
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/s, burst {}", self.per_second, self.burst)
    }
}

/// A limit as config files write it: `{ per_second = 10, burst = 100 }`
/// (`burst` defaults to one second's worth; `per_second = 0` turns it off).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    pub per_second: f64,
    pub burst: Option<u32>,
}

impl RateConfig {
    /// The rate; a negative, non-finite or zero-burst value is refused.
    pub fn rate(self) -> Result<Rate, String> {
        if !self.per_second.is_finite() || self.per_second < 0.0 {
            return Err(format!(
                "per_second must be a number at least 0, got {}",
                self.per_second
            ));
        }
        if self.per_second == 0.0 {
            return Ok(Rate::OFF);
        }
        // One second's worth, at least one token.
        let second = self.per_second.ceil().min(f64::from(u32::MAX)) as u32;
        let burst = self.burst.unwrap_or(second.max(1));
        if burst == 0 {
            return Err("burst must be at least 1".into());
        }
        Ok(Rate {
            per_second: self.per_second,
            burst,
        })
    }
}

/// A refused take: when the bucket will hold enough again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    pub retry_after: Duration,
}

/// A throttled key refills and holds this share of the rate.
pub const THROTTLE_SHARE: f64 = 0.1;

/// Keys tracked before new ones share one overflow bucket: memory stays
/// bounded however many addresses a flood comes from.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// One bucket per key; full (idle) buckets are dropped when the map fills.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: Rate,
    max_keys: usize,
    state: Mutex<State<K>>,
}

#[derive(Debug)]
struct State<K> {
    buckets: HashMap<K, Bucket>,
    overflow: Bucket,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(rate: Rate) -> Self {
        Self::with_max_keys(rate, DEFAULT_MAX_KEYS)
    }

    pub fn with_max_keys(rate: Rate, max_keys: usize) -> Self {
        let now = Instant::now();
        Self {
            rate,
            max_keys: max_keys.max(1),
            state: Mutex::new(State {
                buckets: HashMap::new(),
                overflow: Bucket::full(rate, now),
            }),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes `n` tokens from `key`'s bucket (at most its burst: a larger
    /// request takes the whole bucket), or says how long until it could.
    pub fn try_take(&self, key: &K, n: u32) -> Result<(), Exhausted> {
        if self.rate.is_off() {
            return Ok(());
        }
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        bucket_for(&mut state, key, self.rate, self.max_keys, now).take(self.rate, n, now)
    }

    /// Cuts `key` to [`THROTTLE_SHARE`] of the rate until `until`.
    pub fn throttle(&self, key: &K, until: Instant) {
        if self.rate.is_off() {
            return;
        }
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        bucket_for(&mut state, key, self.rate, self.max_keys, now).throttle(self.rate, until, now);
    }

    /// Keys with a bucket of their own (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .buckets
            .len()
    }
}

fn bucket_for<'a, K: Hash + Eq + Clone>(
    state: &'a mut State<K>,
    key: &K,
    rate: Rate,
    max_keys: usize,
    now: Instant,
) -> &'a mut Bucket {
    if !state.buckets.contains_key(key) && state.buckets.len() >= max_keys {
        // Idle keys have refilled to full: forgetting them loses nothing.
        state.buckets.retain(|_, b| !b.is_full(rate, now));
    }
    if state.buckets.contains_key(key) || state.buckets.len() < max_keys {
        state
            .buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(rate, now))
    } else {
        &mut state.overflow
    }
}

/// A retry hint in whole milliseconds, rounded up: retrying on it succeeds.
pub fn retry_millis(d: Duration) -> u64 {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let partial = !d.subsec_nanos().is_multiple_of(1_000_000);
    ms.saturating_add(u64::from(partial)).max(1)
}

#[cfg(test)]
mod tests;
