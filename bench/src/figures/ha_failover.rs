//! `ha_failover_ms`: two `signet-server` processes on one PostgreSQL
//! database and an agent that knows both; the server its Sync stream is on
//! is killed with SIGKILL, and the figure is the time until the other
//! server counts the agent's stream (`signet_server_connected_agents`),
//! the worst of the samples (each kills whichever server the agent is on,
//! then starts it again). `ha_failover_stream_errors`: errors seen by a
//! workload's open FetchX509SVID stream meanwhile (the goal is none).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use signet_proto::workload::X509svidRequest;
use tokio::time::Instant;

use super::pg::fresh_database;
use super::Ctx;
use crate::child_server::ChildServer;
use crate::env::{with_header, workload_client, Agent};
use crate::report::Report;
use crate::stats::percentile_ms;

const PATIENCE: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let url = fresh_database().await?;
    let dir = ctx.dir.join("ha_failover");
    let mut servers = [
        ChildServer::start(&dir.join("a"), Some(&url)).await?,
        ChildServer::start(&dir.join("b"), Some(&url)).await?,
    ];
    let agent = agent_of(&servers, &dir).await?;
    let entry = signet_proto::admin::Entry {
        spiffe_id: "spiffe://example.org/bench/ha".into(),
        parent_id: agent.id.to_string(),
        selectors: vec![ctx.selector.clone()],
        ..Default::default()
    };
    servers[0].api.admin.clone().create_entry(entry).await?;
    crate::env::wait_for_svid(&agent.socket, "spiffe://example.org/bench/ha", PATIENCE).await?;

    // A workload's stream stays open through every failover.
    let errors = Arc::new(AtomicU64::new(0));
    let mut client = workload_client(&agent.socket).await?;
    let mut stream = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await?
        .into_inner();
    let watcher = {
        let errors = errors.clone();
        tokio::spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        })
    };

    let samples = if ctx.quick { 3 } else { 10 };
    let mut took = Vec::with_capacity(samples);
    for _ in 0..samples {
        let on = connected_to(&servers).await?;
        let other = 1 - on;
        let killed = Instant::now();
        servers[on].kill9().await?;
        loop {
            if connected(&servers[other].telemetry).await.unwrap_or(0.0) >= 1.0 {
                break;
            }
            anyhow::ensure!(
                killed.elapsed() < PATIENCE,
                "the agent did not resume on the other server within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        took.push(killed.elapsed());
        servers[on].launch().await?;
    }
    let worst = took.iter().max().copied().unwrap_or_default();
    report.add("ha_failover_ms", worst.as_secs_f64() * 1000.0, "ms");
    report.add("ha_failover_p50_ms", percentile_ms(&mut took, 50.0), "ms");
    report.add(
        "ha_failover_stream_errors",
        errors.load(Ordering::Relaxed) as f64,
        "count",
    );
    watcher.abort();
    agent.stop().await;
    for server in &mut servers {
        server.kill9().await?;
    }
    Ok(())
}

/// An agent in this process attested through the first server, knowing both.
async fn agent_of(servers: &[ChildServer; 2], dir: &std::path::Path) -> anyhow::Result<Agent> {
    let first = &servers[0].api;
    let (token, id) = crate::env::join_token(&first.admin, &first.td).await?;
    crate::env::start_agent_with_token(
        token,
        id,
        &format!("{},{}", servers[0].api.addr, servers[1].api.addr),
        &first.td,
        &dir.join("agent"),
    )
    .await
}

/// Which server counts the agent's stream now.
async fn connected_to(servers: &[ChildServer; 2]) -> anyhow::Result<usize> {
    let started = Instant::now();
    loop {
        for (i, s) in servers.iter().enumerate() {
            if connected(&s.telemetry).await.unwrap_or(0.0) >= 1.0 {
                return Ok(i);
            }
        }
        anyhow::ensure!(
            started.elapsed() < PATIENCE,
            "the agent syncs with no server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `signet_server_connected_agents` from a server's `/metrics`.
async fn connected(telemetry: &str) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(telemetry).await?;
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    tcp.read_to_string(&mut body).await?;
    body.lines()
        .find_map(|l| l.strip_prefix("signet_server_connected_agents "))
        .context("no signet_server_connected_agents")?
        .trim()
        .parse()
        .context("connected_agents is not a number")
}
