//! `agent_rss_mb_1k`, `agent_rss_mb_10k`, `sync_10k_ms`: the real
//! `signet-agent` binary as a child (so its RSS is its own), cold-started on
//! a fresh data dir with a new join token for an agent that owns N entries;
//! timed from spawn until its `/metrics` report N SVIDs held. Side figures
//! `entry_create_{1k,10k}_s`: creating those entries with BatchCreateEntry.

use std::time::Duration;

use tokio::time::Instant;

use super::Ctx;
use crate::child::rss;
use crate::child_agent::ChildAgent;
use crate::report::Report;

/// Matches no workload: the agent holds these SVIDs without serving them.
const SELECTOR: &str = "unix:uid:4294967293";

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    // The 10k agent takes ~25 s to sign its SVIDs: full runs only.
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
        let mut agent = ChildAgent::spawn(
            &dir,
            &ctx.server.node_addr(),
            &ctx.server.td.to_string(),
            &token,
        )?;
        let started = Instant::now();
        let patience = Duration::from_secs(120);
        loop {
            if agent.svids_held().await.unwrap_or(0.0) >= n as f64 {
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
        let rss = rss(agent.pid()?)?;
        let _ = agent.child.kill().await;
        report.add(&format!("agent_rss_mb_{label}"), rss.now_mb, "MB");
        // The most it held at any moment (the cold start's peak).
        report.add(&format!("agent_rss_peak_mb_{label}"), rss.peak_mb, "MB");
        report.add(&format!("agent_rss_anon_mb_{label}"), rss.anon_mb, "MB");
        report.add(&format!("agent_rss_file_mb_{label}"), rss.file_mb, "MB");
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
    let entries = (0..n)
        .map(|i| {
            Ok(signet_proto::admin::Entry {
                spiffe_id: ctx.server.id(&format!("/bench/rss{label}/{i}"))?,
                parent_id: agent.to_string(),
                selectors: vec![SELECTOR.into()],
                ..Default::default()
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::env::create_entries(&ctx.server.admin, entries).await?;
    Ok(())
}
