//! `vs_spire_propagation_create_p99` / `_delete_p99`: an entry created (its
//! create call returned) until its SVID is on an open FetchX509SVID stream;
//! deleted until the stream withdraws it.
//!
//! Entries are created one after another at uneven spacing, each sample
//! its own entry's latency, none awaited before the next: a system that
//! syncs on a timer then costs the bench seconds, not samples × interval.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use signet_proto::workload::X509svidRequest;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::system::System;
use crate::env::{with_header, workload_client};

const PATIENCE: Duration = Duration::from_secs(60);
/// The mean gap between two creations (or deletions).
const SPACING: Duration = Duration::from_millis(50);

/// One round's samples.
#[derive(Default)]
pub struct Samples {
    pub created: Vec<Duration>,
    pub deleted: Vec<Duration>,
}

/// A message of the stream: when it came and the SPIFFE IDs it carried.
type Seen = (Instant, HashSet<String>);

/// `samples` entries created, then deleted, on `system`; `round` keeps
/// their SPIFFE IDs apart from other rounds'.
pub async fn round<S: System>(system: &S, samples: usize, round: usize) -> anyhow::Result<Samples> {
    let mut client = workload_client(system.socket()).await?;
    let mut stream = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await?
        .into_inner();
    let (tx, mut rx) = mpsc::unbounded_channel::<Seen>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(msg)) = stream.message().await {
            let ids = msg.svids.into_iter().map(|s| s.spiffe_id).collect();
            if tx.send((Instant::now(), ids)).is_err() {
                return;
            }
        }
    });
    let ids: Vec<String> = (0..samples)
        .map(|i| system.spiffe_id(&format!("/bench/propagation/{round}/{i}")))
        .collect();
    let mut log = Vec::new();

    let mut calls = Vec::with_capacity(samples);
    for (i, id) in ids.iter().enumerate() {
        tokio::time::sleep(spacing(i)).await;
        let start = Instant::now();
        let entry = system.create_entry(id).await?;
        calls.push((start, Instant::now(), entry));
    }
    collect_until(&mut rx, &mut log, |now| {
        ids.iter().all(|id| now.contains(id))
    })
    .await
    .with_context(|| {
        format!(
            "{}: created SVIDs never all reached the stream",
            system.name()
        )
    })?;
    let created = latencies(&calls, &ids, &log, true)?;

    let mut deletions = Vec::with_capacity(samples);
    for (i, (_, _, entry)) in calls.iter().enumerate() {
        tokio::time::sleep(spacing(i)).await;
        let start = Instant::now();
        system.delete_entry(entry).await?;
        deletions.push((start, Instant::now(), entry.clone()));
    }
    collect_until(&mut rx, &mut log, |now| {
        ids.iter().all(|id| !now.contains(id))
    })
    .await
    .with_context(|| format!("{}: deleted SVIDs were never all withdrawn", system.name()))?;
    let deleted = latencies(&deletions, &ids, &log, false)?;
    reader.abort();
    Ok(Samples { created, deleted })
}

/// Uneven gaps with the mean `SPACING` (a golden-ratio sequence: spread
/// over [SPACING/4, 7·SPACING/4] with no pattern a timer could lock onto).
fn spacing(i: usize) -> Duration {
    let golden = 0.618_033_988_749_895_f64;
    let frac = (i as f64 * golden).fract();
    SPACING.mul_f64(0.25 + 1.5 * frac)
}

/// Receives messages into `log` until the latest one satisfies `done`.
async fn collect_until(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    log: &mut Vec<Seen>,
    done: impl Fn(&HashSet<String>) -> bool,
) -> anyhow::Result<()> {
    if log.last().is_some_and(|(_, ids)| done(ids)) {
        return Ok(());
    }
    tokio::time::timeout(PATIENCE, async {
        while let Some(seen) = rx.recv().await {
            let finished = done(&seen.1);
            log.push(seen);
            if finished {
                return Ok(());
            }
        }
        anyhow::bail!("the stream ended")
    })
    .await
    .context("timed out")?
}

/// For each call (started, returned) on `ids[i]`: from its return until
/// the first message after its start that holds (`present`) or lacks the
/// ID. A message between start and return counts as zero.
fn latencies(
    calls: &[(Instant, Instant, String)],
    ids: &[String],
    log: &[Seen],
    present: bool,
) -> anyhow::Result<Vec<Duration>> {
    calls
        .iter()
        .zip(ids)
        .map(|((start, returned, _), id)| {
            let (at, _) = log
                .iter()
                .find(|(at, seen)| at >= start && seen.contains(id) == present)
                .with_context(|| format!("no message ever showed the change for {id}"))?;
            Ok(at.saturating_duration_since(*returned))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_averages_its_mean_and_stays_in_its_bounds() {
        let gaps: Vec<Duration> = (0..1000).map(spacing).collect();
        let mean = gaps.iter().sum::<Duration>() / 1000;
        assert!(
            mean.abs_diff(SPACING) < Duration::from_millis(2),
            "{mean:?}"
        );
        assert!(gaps
            .iter()
            .all(|g| *g >= SPACING / 4 && *g <= SPACING * 7 / 4));
    }

    #[test]
    fn a_latency_is_from_the_call_s_return_to_the_first_message_showing_it() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let id = "spiffe://x/a".to_string();
        let with = HashSet::from([id.clone()]);
        let log = vec![
            (ms(5), HashSet::new()),
            (ms(30), with.clone()),
            (ms(50), with),
        ];
        let calls = vec![(ms(10), ms(20), "e".to_string())];
        let got = latencies(&calls, std::slice::from_ref(&id), &log, true).unwrap();
        assert_eq!(got, vec![Duration::from_millis(10)]);
        // Deleted: the first message after the call's start lacking it.
        let calls = vec![(ms(40), ms(45), "e".to_string())];
        assert!(latencies(&calls, &[id], &log, false).is_err());
    }
}
