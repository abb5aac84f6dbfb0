//! `server_100k_sync_s`, `server_100k_sync_errors`, `server_rss_mb`: the real
//! `signet-server` binary as a child (so its RSS is its own) holding 100k
//! entries, 100 for each of 1,000 simulated agents attested with join tokens
//! over the Node API; timed from all agents opening their `Sync` stream at
//! once until each has its snapshot of 100 entries. RSS is read with every
//! stream still open. Side figures: how fast the agents attested and the
//! entries were created (BatchCreateEntry), the RSS before the sync (every
//! agent connected, no stream yet) and the peak.
//!
//! `--quick` runs 100 agents (10k entries) under the same figure names; the
//! scale is printed and reported as `server_sync_agents`/`_entries`.

use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context;
use signet_core::TrustDomain;
use signet_proto::admin::Entry;
use signet_proto::node::SyncRequest;

use super::Ctx;
use crate::child::rss;
use crate::child_server::ChildServer;
use crate::env::{attest_node_agent_at, create_entries, NodeAgent, NodeApi};
use crate::report::Report;

const PER_AGENT: usize = 100;
/// Matches no workload: these entries exist only to be synced.
const SELECTOR: &str = "unix:uid:4294967292";
/// Agents attested at once while setting up.
const ATTESTERS: usize = 8;
/// How long one agent may take to get its snapshot before it counts as an
/// error.
const SYNC_PATIENCE: Duration = Duration::from_secs(60);

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let dir = ctx.dir.join("server_sync");
    let server = ChildServer::start(&dir, None).await?;
    run_on(ctx, report, vec![server]).await
}

/// The same on `servers` (an HA group on one PostgreSQL database): agent
/// `i` attests to and syncs with server `i % n`; the entries are created
/// through the first.
pub async fn run_on(
    ctx: &Ctx,
    report: &mut Report,
    mut servers: Vec<ChildServer>,
) -> anyhow::Result<()> {
    let agents = if ctx.quick { 100 } else { 1_000 };
    println!(
        "server_sync: {agents} agents x {PER_AGENT} entries = {} entries on {} server(s){}",
        agents * PER_AGENT,
        servers.len(),
        if ctx.quick { " (quick scale)" } else { "" }
    );
    report.add("server_sync_agents", agents as f64, "count");
    report.add("server_sync_entries", (agents * PER_AGENT) as f64, "count");
    let first = servers.first().context("no server")?.api.clone();

    let start = Instant::now();
    let apis: Vec<NodeApi> = servers.iter().map(|s| s.api.clone()).collect();
    let nodes = attest_all(&apis, agents).await?;
    report.add(
        "server_attest_per_s",
        agents as f64 / start.elapsed().as_secs_f64(),
        "1/s",
    );

    let entries = entries_for(&first.td, &nodes);
    let start = Instant::now();
    create_entries(&first.admin, entries).await?;
    report.add(
        "server_entry_create_per_s",
        (agents * PER_AGENT) as f64 / start.elapsed().as_secs_f64(),
        "1/s",
    );

    let pid = servers[0].pid()?;
    report.add("server_rss_before_sync_mb", rss(pid)?.now_mb, "MB");

    let (took, errors, streams) = sync_all(nodes).await?;
    report.add("server_100k_sync_s", took.as_secs_f64(), "s");
    report.add("server_100k_sync_errors", errors as f64, "count");
    let mem = rss(pid)?;
    report.add("server_rss_mb", mem.now_mb, "MB");
    report.add("server_rss_peak_mb", mem.peak_mb, "MB");
    drop(streams);
    for server in &mut servers {
        server.kill9().await?;
    }
    Ok(())
}

/// Agent `i` attests to server `i % servers.len()`, eight at a time.
pub async fn attest_all(servers: &[NodeApi], n: usize) -> anyhow::Result<Vec<NodeAgent>> {
    let workers: Vec<_> = (0..ATTESTERS)
        .map(|w| {
            let servers = servers.to_vec();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in (w..n).step_by(ATTESTERS) {
                    out.push(attest_node_agent_at(&servers[i % servers.len()]).await?);
                }
                anyhow::Ok(out)
            })
        })
        .collect();
    let mut agents = Vec::with_capacity(n);
    for w in workers {
        agents.extend(w.await??);
    }
    Ok(agents)
}

fn entries_for(td: &TrustDomain, agents: &[NodeAgent]) -> Vec<Entry> {
    agents
        .iter()
        .enumerate()
        .flat_map(|(a, agent)| {
            (0..PER_AGENT).map(move |i| Entry {
                spiffe_id: format!("spiffe://{td}/bench/sync/{a}/{i}"),
                parent_id: agent.id.to_string(),
                selectors: vec![SELECTOR.into()],
                ..Default::default()
            })
        })
        .collect()
}

/// Every agent opens its stream at once; returns the time until the last
/// full snapshot arrived, how many agents failed, and the open streams.
async fn sync_all(
    agents: Vec<NodeAgent>,
) -> anyhow::Result<(
    Duration,
    usize,
    Vec<tonic::Streaming<signet_proto::node::SyncResponse>>,
)> {
    let start = Instant::now();
    let tasks: Vec<_> = agents
        .into_iter()
        .map(|mut agent| {
            tokio::spawn(async move {
                let synced = tokio::time::timeout(SYNC_PATIENCE, async {
                    let mut stream = agent
                        .client
                        .sync(SyncRequest {
                            since_revision: 0,
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    let first = stream
                        .message()
                        .await?
                        .context("the stream ended before the snapshot")?;
                    anyhow::ensure!(
                        first.snapshot && first.entries.len() == PER_AGENT,
                        "got {} entries (snapshot: {}), expected {PER_AGENT}",
                        first.entries.len(),
                        first.snapshot
                    );
                    Ok(stream)
                })
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no snapshot within {SYNC_PATIENCE:?}")));
                (agent.id, synced, start.elapsed())
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    let mut last = Duration::ZERO;
    for t in tasks {
        let (id, synced, at) = t.await?;
        last = last.max(at);
        match synced {
            Ok(s) => streams.push(s),
            Err(e) => {
                if errors == 0 {
                    println!("server_sync: first error, agent {id}: {e:#}");
                }
                errors += 1;
            }
        }
    }
    Ok((last, errors, streams))
}
