//! `vs_spire_server_rss_1k_agents`: a fresh server's resident memory with
//! 1,000 simulated agents synced and connected, each having attested with
//! a join token, fetched its `PER_AGENT` entries and had an X509-SVID
//! signed for each, as a real agent's first sync does. Signet's agents
//! speak its Node API from this process (a Sync stream left open); SPIRE's
//! are `spire-agent-sim` (bench/go), speaking SPIRE's server APIs with its
//! own SDK and keeping each agent's connection open. Real agents would be
//! 1,000 processes: more memory than this machine has for SPIRE's.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use signet_core::x509::build_csr;
use signet_core::SpiffeId;
use signet_proto::admin::Entry;
use signet_proto::node::{BatchSignX509SvidRequest, SignX509SvidParams, SyncRequest};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::child::rss;
use crate::child_server::ChildServer;
use crate::env::{create_entries, NodeAgent};
use crate::figures::server_sync::attest_all;

pub const AGENTS: usize = 1_000;
pub const PER_AGENT: usize = 10;
/// Matches no workload: these entries exist only to be synced.
pub const SELECTOR: (&str, &str) = ("unix", "uid:4294967292");
const PATIENCE: Duration = Duration::from_secs(300);

/// Signet: a fresh `signet-server` child, its RSS in MB once every agent
/// synced (its streams still open).
pub async fn signet(dir: &Path, agents: usize) -> anyhow::Result<f64> {
    let mut server = ChildServer::start(&dir.join("signet-server-rss"), None).await?;
    let api = server.api.clone();
    let nodes = attest_all(std::slice::from_ref(&api), agents).await?;
    let entries: Vec<Entry> = nodes
        .iter()
        .enumerate()
        .flat_map(|(a, node)| {
            let td = api.td.clone();
            (0..PER_AGENT).map(move |i| Entry {
                spiffe_id: format!("spiffe://{td}/sim/{a}/{i}"),
                parent_id: node.id.to_string(),
                selectors: vec![format!("{}:{}", SELECTOR.0, SELECTOR.1)],
                ..Default::default()
            })
        })
        .collect();
    create_entries(&api.admin, entries).await?;
    let tasks: Vec<_> = nodes
        .into_iter()
        .map(|node| tokio::spawn(tokio::time::timeout(PATIENCE, first_sync(node))))
        .collect();
    let mut held = Vec::with_capacity(tasks.len());
    for t in tasks {
        held.push(t.await?.context("an agent's first sync timed out")??);
    }
    let mb = rss(server.pid()?)?.now_mb;
    drop(held);
    server.kill9().await?;
    Ok(mb)
}

/// What an agent holds open after its first sync.
type Held = (
    NodeAgent,
    tonic::Streaming<signet_proto::node::SyncResponse>,
);

/// The snapshot, then an SVID signed for each of its entries.
async fn first_sync(mut node: NodeAgent) -> anyhow::Result<Held> {
    let mut stream = node
        .client
        .sync(SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await?
        .into_inner();
    let snapshot = stream.message().await?.context("no snapshot")?;
    anyhow::ensure!(
        snapshot.entries.len() == PER_AGENT,
        "{} got {} entries, expected {PER_AGENT}",
        node.id,
        snapshot.entries.len()
    );
    let params = snapshot
        .entries
        .iter()
        .map(|e| {
            let key = rcgen::KeyPair::generate()?;
            let csr = build_csr(&key, &SpiffeId::parse_with_path(&e.spiffe_id)?)?;
            Ok(SignX509SvidParams {
                entry_id: e.id.clone(),
                csr,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let results = node
        .client
        .batch_sign_x509_svid(BatchSignX509SvidRequest { params })
        .await?
        .into_inner()
        .results;
    let signed = results.iter().filter(|r| r.error_code == 0).count();
    anyhow::ensure!(
        signed == PER_AGENT,
        "{} had {signed} of {PER_AGENT} SVIDs signed",
        node.id
    );
    Ok((node, stream))
}

/// SPIRE: `sim` (spire-agent-sim) run against a fresh SPIRE server `pid`
/// listening on `server_addr`, admin socket `admin_socket`, trusting
/// `bundle`; the server's RSS in MB once the sim says every agent synced.
pub async fn spire(
    sim: &Path,
    pid: u32,
    server_addr: &str,
    admin_socket: &Path,
    trust_domain: &str,
    bundle: &Path,
    agents: usize,
) -> anyhow::Result<f64> {
    let mut child = tokio::process::Command::new(sim)
        .arg("-serverAddr")
        .arg(server_addr)
        .arg("-adminSocket")
        .arg(admin_socket)
        .arg("-trustDomain")
        .arg(trust_domain)
        .arg("-bundle")
        .arg(bundle)
        .arg("-agents")
        .arg(agents.to_string())
        .arg("-entriesPerAgent")
        .arg(PER_AGENT.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", sim.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let synced = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await? {
            let v: serde_json::Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if v["event"] == "synced" {
                return Ok(v);
            }
        }
        anyhow::bail!("spire-agent-sim ended before every agent synced")
    })
    .await;
    let synced = match synced {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let out = child.wait_with_output().await?;
            anyhow::bail!("{e}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Err(_) => anyhow::bail!("spire-agent-sim did not sync {agents} agents within {PATIENCE:?}"),
    };
    let errors = synced["errors"].as_u64().unwrap_or(u64::MAX);
    let svids = synced["svids"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        errors == 0 && svids == (agents * PER_AGENT) as u64,
        "spire-agent-sim: {svids} SVIDs, {errors} errors: {synced}"
    );
    let mb = rss(pid)?.now_mb;
    // Its stdin closing lets it close its connections and exit.
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    Ok(mb)
}
