//! `agent_rss_mb_1k`, `agent_rss_mb_10k`, `sync_10k_ms`: the real
//! `signet-agent` binary as a child (so its RSS is its own), cold-started on
//! a fresh data dir with a new join token for an agent that owns N entries;
//! timed from spawn until its `/metrics` report N SVIDs held.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Ctx;
use crate::report::Report;

/// Matches no workload: the agent holds these SVIDs without serving them.
const SELECTOR: &str = "unix:uid:4294967293";
// One at a time: concurrent CreateEntry calls get "database is locked" from
// the server (SQLite busy), which is a finding of its own, not this figure.
const CREATORS: usize = 1;

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let agent_bin = agent_binary()?;
    // 10k entries alone take ~25 s to create one by one: full runs only.
    let sizes: &[(usize, &str)] = if ctx.quick {
        &[(1_000, "1k")]
    } else {
        &[(1_000, "1k"), (10_000, "10k")]
    };
    for &(n, label) in sizes {
        let (token, agent_id) = ctx.server.join_token().await?;
        let start = Instant::now();
        create_entries(ctx, &agent_id, n, label).await?;
        report.add(
            &format!("entry_create_{label}_s"),
            start.elapsed().as_secs_f64(),
            "s",
        );

        let dir = ctx.dir.join(format!("rss{label}"));
        let port = free_port()?;
        let mut child = tokio::process::Command::new(&agent_bin)
            .arg("run")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--socket-path")
            .arg(dir.join("a.sock"))
            .arg("--server-address")
            .arg(ctx.server.node_addr())
            .arg("--trust-domain")
            .arg(ctx.server.td.to_string())
            .arg("--insecure-bootstrap")
            .arg("--join-token")
            .arg(&token)
            .arg("--telemetry-bind")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", agent_bin.display()))?;
        let started = Instant::now();
        let patience = Duration::from_secs(120);
        loop {
            if held(port).await.unwrap_or(0.0) >= n as f64 {
                break;
            }
            if started.elapsed() > patience {
                anyhow::bail!("agent did not hold {n} SVIDs within {patience:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let synced = started.elapsed();
        // Let the post-sync work (persisting the cache) settle first.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = child.id().context("agent exited")?;
        let rss = vm_rss_mb(pid)?;
        let _ = child.kill().await;
        report.add(&format!("agent_rss_mb_{label}"), rss, "MB");
        if n == 10_000 {
            report.add("sync_10k_ms", synced.as_secs_f64() * 1000.0, "ms");
        }
    }
    Ok(())
}

async fn create_entries(
    ctx: &Ctx,
    agent: &signet_core::SpiffeId,
    n: usize,
    label: &str,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for c in 0..CREATORS {
        let ids: Vec<String> = (c..n)
            .step_by(CREATORS)
            .map(|i| ctx.server.id(&format!("/bench/rss{label}/{i}")))
            .collect::<Result<_, _>>()?;
        let admin = ctx.server.admin.clone();
        let agent = agent.to_string();
        tasks.push(tokio::spawn(async move {
            let mut admin = admin;
            for id in ids {
                admin
                    .create_entry(signet_proto::admin::Entry {
                        spiffe_id: id,
                        parent_id: agent.clone(),
                        selectors: vec![SELECTOR.into()],
                        ..Default::default()
                    })
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// `signet_agent_svids_held` from the agent's `/metrics`.
async fn held(port: u16) -> anyhow::Result<f64> {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    tcp.read_to_string(&mut body).await?;
    body.lines()
        .find_map(|l| l.strip_prefix("signet_agent_svids_held "))
        .context("no signet_agent_svids_held")?
        .trim()
        .parse()
        .context("svids_held is not a number")
}

fn vm_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb / 1024.0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `signet-agent` binary next to this one. Build it first (`cargo build
/// --release -p signet-agent`): building it from here made cargo rebuild the
/// bench each run (features unify differently), which broke the time limit.
fn agent_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("bench binary has no directory")?;
    let bin = dir.join("signet-agent");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p signet-agent` first",
        bin.display()
    );
    Ok(bin)
}
