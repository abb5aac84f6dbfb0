//! `fetch_p99_ratio`: FetchX509SVID first-message p99 with 1, 16 and 256
//! concurrent workloads (each a fresh connection) ÷ the p99 of a bare tonic
//! echo doing the same (fresh connection, one call) at the same concurrency.
//! These callers are one process, so after the first call each attestation
//! comes from the agent's 1 s cache. Beside them, `fetch_p99_ratio_p16`:
//! 16 workload *processes* at once, each a new pid the agent must attest
//! from procfs (each times its own call; process start is not counted).

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context;
use signet_proto::workload::X509svidRequest;

use super::Ctx;
use crate::env::{unix_channel, with_header, workload_client};
use crate::report::Report;
use crate::stats::percentile_ms;

const LEVELS: [usize; 3] = [1, 16, 256];

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let echo_socket = ctx.dir.join("echo.sock");
    let echo = crate::echo::serve(&echo_socket)?;
    let mut worst: f64 = 0.0;
    for level in LEVELS {
        // At 256 a round is one burst, and one disturbed burst would be
        // the whole top 1%: enough rounds that p99 is not one burst's.
        let rounds_at_least = if ctx.quick { 4 } else { 20 };
        let samples = if ctx.quick { 300 } else { 1500 }.max(level * rounds_at_least);
        let rounds = samples.div_ceil(level);
        // One unmeasured round of each first: the first burst at a new
        // concurrency grows this process's file table (each growth waits
        // out an RCU grace period, ~15 ms, with every thread opening a
        // socket blocked behind it), a one-off that is not a fetch's cost.
        round(level, &ctx.agent.socket, Kind::Fetch).await?;
        round(level, &echo_socket, Kind::Echo).await?;
        let mut fetch = Vec::new();
        let mut bare = Vec::new();
        // Interleaved, so both see the same background noise.
        for _ in 0..rounds {
            fetch.extend(round(level, &ctx.agent.socket, Kind::Fetch).await?);
            bare.extend(round(level, &echo_socket, Kind::Echo).await?);
        }
        let fetch_p99 = percentile_ms(&mut fetch, 99.0);
        let echo_p99 = percentile_ms(&mut bare, 99.0);
        report.add(&format!("fetch_p99_ms_c{level}"), fetch_p99, "ms");
        report.add(&format!("echo_p99_ms_c{level}"), echo_p99, "ms");
        worst = worst.max(fetch_p99 / echo_p99);
    }
    distinct_processes(ctx, &echo_socket, report).await?;
    echo.abort();
    report.add("fetch_p99_ratio", worst, "ratio");
    Ok(())
}

const PROCESSES: usize = 16;

/// `PROCESSES` workload processes at a time, fetch and echo interleaved.
async fn distinct_processes(
    ctx: &Ctx,
    echo_socket: &std::path::Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let rounds = if ctx.quick { 5 } else { 40 };
    let mut fetch = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..rounds {
        fetch.extend(process_round(&ctx.agent.socket, "--fetch-once").await?);
        bare.extend(process_round(echo_socket, "--echo-once").await?);
    }
    let fetch_p99 = percentile_ms(&mut fetch, 99.0);
    let echo_p99 = percentile_ms(&mut bare, 99.0);
    report.add("fetch_p99_ms_p16", fetch_p99, "ms");
    report.add("echo_p99_ms_p16", echo_p99, "ms");
    report.add("fetch_p99_ratio_p16", fetch_p99 / echo_p99, "ratio");
    Ok(())
}

/// `PROCESSES` children of this binary started together, each making one
/// call on `socket` and printing how long it took.
async fn process_round(socket: &std::path::Path, flag: &str) -> anyhow::Result<Vec<Duration>> {
    let me = std::env::current_exe()?;
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            tokio::process::Command::new(&me)
                .arg(flag)
                .arg(socket)
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(PROCESSES);
    for child in children {
        let done = child.wait_with_output().await?;
        anyhow::ensure!(done.status.success(), "a workload process failed");
        let micros: u64 = String::from_utf8_lossy(&done.stdout).trim().parse()?;
        out.push(Duration::from_micros(micros));
    }
    Ok(out)
}

/// A workload process's one call: `fetch` or the echo; prints microseconds.
pub async fn once_and_print(socket: &std::path::Path, fetch: bool) -> anyhow::Result<()> {
    let took = one(socket, if fetch { Kind::Fetch } else { Kind::Echo }).await?;
    println!("{}", took.as_micros());
    Ok(())
}

#[derive(Clone, Copy)]
pub enum Kind {
    Fetch,
    Echo,
}

/// `level` clients at once, each connecting and making one request.
pub async fn round(
    level: usize,
    socket: &std::path::Path,
    kind: Kind,
) -> anyhow::Result<Vec<Duration>> {
    let tasks: Vec<_> = (0..level)
        .map(|_| {
            let socket: PathBuf = socket.to_path_buf();
            tokio::spawn(async move { one(&socket, kind).await })
        })
        .collect();
    let mut out = Vec::with_capacity(level);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

async fn one(socket: &std::path::Path, kind: Kind) -> anyhow::Result<Duration> {
    let start = Instant::now();
    match kind {
        Kind::Fetch => {
            let mut client = workload_client(socket).await?;
            let msg = client
                .fetch_x509svid(with_header(X509svidRequest {}))
                .await?
                .into_inner()
                .message()
                .await?
                .context("stream ended before the first message")?;
            anyhow::ensure!(!msg.svids.is_empty(), "first message has no SVID");
        }
        Kind::Echo => {
            let channel = unix_channel(socket).await?;
            crate::echo::call(channel, vec![0u8; 64]).await?;
        }
    }
    Ok(start.elapsed())
}
