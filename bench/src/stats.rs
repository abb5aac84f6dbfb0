//! Percentiles over latency samples.

use std::time::Duration;

/// The nearest-rank percentile `p` (0..=100) of `samples`, in milliseconds.
pub fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, samples.len()) - 1;
    samples[idx].as_secs_f64() * 1000.0
}

/// Runs `work` on every core for `for_how_long`; returns operations per second.
pub fn parallel_rate<F>(for_how_long: Duration, work: F) -> f64
where
    F: Fn() -> u64 + Sync,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = tokio::time::Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while start.elapsed() < for_how_long {
                        n += work();
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}
