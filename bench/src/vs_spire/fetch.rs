//! `vs_spire_fetch_p99_c{1,16,256}`: FetchX509SVID until its first message,
//! each call a fresh connection, 1, 16 and 256 at once: the same client
//! and rounds as `fetch_p99_ratio`'s, alternating between the systems.

use std::time::Duration;

use super::signet::Signet;
use super::spire::Spire;
use super::system::System;
use crate::figures::fetch::{round, Kind};
use crate::stats::percentile_ms;

pub const LEVELS: [usize; 3] = [1, 16, 256];

/// p99 (ms) at `level` on Signet and on SPIRE.
pub async fn p99(
    signet: &Signet,
    spire: &Spire,
    level: usize,
    quick: bool,
) -> (anyhow::Result<f64>, anyhow::Result<f64>) {
    let rounds_at_least = if quick { 4 } else { 20 };
    let samples = if quick { 300 } else { 1500 }.max(level * rounds_at_least);
    let rounds = samples.div_ceil(level);
    // One unmeasured round each first (this process's file table grows).
    let mut signet_samples = warm(signet, level).await;
    let mut spire_samples = warm(spire, level).await;
    for _ in 0..rounds {
        extend(
            &mut signet_samples,
            round(level, signet.socket(), Kind::Fetch).await,
        );
        extend(
            &mut spire_samples,
            round(level, spire.socket(), Kind::Fetch).await,
        );
    }
    (
        signet_samples.map(|mut s| percentile_ms(&mut s, 99.0)),
        spire_samples.map(|mut s| percentile_ms(&mut s, 99.0)),
    )
}

/// An empty sample list, or the warm-up round's error.
async fn warm<S: System>(system: &S, level: usize) -> anyhow::Result<Vec<Duration>> {
    round(level, system.socket(), Kind::Fetch).await?;
    Ok(Vec::new())
}

/// Adds a round's samples; the first error sticks.
fn extend(into: &mut anyhow::Result<Vec<Duration>>, got: anyhow::Result<Vec<Duration>>) {
    if let Ok(samples) = into {
        match got {
            Ok(more) => samples.extend(more),
            Err(e) => *into = Err(e),
        }
    }
}
