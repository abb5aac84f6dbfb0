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

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context;
use signet_core::TrustDomain;
use signet_proto::admin::{Entry, HealthRequest};
use signet_proto::node::SyncRequest;
use tokio::process::{Child, Command};

use super::Ctx;
use crate::child::{free_port, rss, sibling_binary};
use crate::env::{attest_node_agent_at, create_entries, Admin, NodeAgent, NodeApi};
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
    let agents = if ctx.quick { 100 } else { 1_000 };
    println!(
        "server_sync: {agents} agents x {PER_AGENT} entries = {} entries{}",
        agents * PER_AGENT,
        if ctx.quick { " (quick scale)" } else { "" }
    );
    report.add("server_sync_agents", agents as f64, "count");
    report.add("server_sync_entries", (agents * PER_AGENT) as f64, "count");

    let dir = ctx.dir.join("server_sync");
    std::fs::create_dir_all(&dir)?;
    let mut server = ChildServer::start(&dir).await?;

    let start = Instant::now();
    let nodes = attest_all(&server.api, agents).await?;
    report.add(
        "server_attest_per_s",
        agents as f64 / start.elapsed().as_secs_f64(),
        "1/s",
    );

    let entries = entries_for(&server.api.td, &nodes);
    let start = Instant::now();
    create_entries(&server.api.admin, entries).await?;
    report.add(
        "server_entry_create_per_s",
        (agents * PER_AGENT) as f64 / start.elapsed().as_secs_f64(),
        "1/s",
    );

    let pid = server.child.id().context("the server exited")?;
    report.add("server_rss_before_sync_mb", rss(pid)?.now_mb, "MB");

    let (took, errors, streams) = sync_all(nodes).await?;
    report.add("server_100k_sync_s", took.as_secs_f64(), "s");
    report.add("server_100k_sync_errors", errors as f64, "count");
    let mem = rss(pid)?;
    report.add("server_rss_mb", mem.now_mb, "MB");
    report.add("server_rss_peak_mb", mem.peak_mb, "MB");
    drop(streams);
    server.child.kill().await?;
    Ok(())
}

/// `signet-server run` on `dir`, once its Admin API answers.
struct ChildServer {
    child: Child,
    api: NodeApi,
}

impl ChildServer {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let bin = sibling_binary("signet-server")?;
        let td = TrustDomain::new("example.org")?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let socket = dir.join("admin.sock");
        let log = std::fs::File::create(dir.join("server.log"))?;
        // A thousand agents from one loopback address: above the default
        // cap of connections per source address.
        let config = dir.join("server.toml");
        std::fs::write(&config, "[node_api]\nmax_connections_per_address = 16384\n")?;
        let child = Command::new(&bin)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--trust-domain")
            .arg(td.to_string())
            .arg("--bind")
            .arg(&addr)
            .arg("--admin-socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let admin = serving_admin(&socket).await?;
        Ok(Self {
            child,
            api: NodeApi { admin, td, addr },
        })
    }
}

async fn serving_admin(socket: &Path) -> anyhow::Result<Admin> {
    let patience = Duration::from_secs(30);
    let started = Instant::now();
    loop {
        if let Ok(mut admin) = signet_server::cli::client::connect(socket).await {
            if let Ok(r) = admin.health(HealthRequest {}).await {
                if r.into_inner().serving {
                    return Ok(admin);
                }
            }
        }
        anyhow::ensure!(
            started.elapsed() < patience,
            "the server did not serve within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn attest_all(api: &NodeApi, n: usize) -> anyhow::Result<Vec<NodeAgent>> {
    let workers: Vec<_> = (0..ATTESTERS)
        .map(|w| {
            let api = api.clone();
            let count = (w..n).step_by(ATTESTERS).count();
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(count);
                for _ in 0..count {
                    out.push(attest_node_agent_at(&api).await?);
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
                        .sync(SyncRequest { since_revision: 0 })
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
