//! `revoke_during_cold_start_ms`: an agent (in this process, its own data
//! dir) serves this process an SVID on an open FetchX509SVID stream, then
//! receives N new entries at once (10k; 1k quick), a cold start of N SVIDs;
//! as soon as they are created (~0.4 s for 10k, while the agent still signs
//! for about a second more) the agent is banned. Timed from the BanAgent call
//! until the stream is withdrawn (PermissionDenied, no identity issued): the
//! cache manager must not wait for its signing rounds to act on the ban.

use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context;
use signet_proto::admin::AgentRequest;
use signet_proto::workload::X509svidRequest;

use super::Ctx;
use crate::env::{start_agent, wait_for_svid, with_header, workload_client};
use crate::report::Report;

/// Matches no workload: the agent signs these SVIDs without serving them.
const SELECTOR: &str = "unix:uid:4294967292";
const PATIENCE: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let n = if ctx.quick { 1_000 } else { 10_000 };
    let dir = ctx.dir.join("ban");
    std::fs::create_dir_all(&dir)?;
    let agent = start_agent(&ctx.server, &dir).await?;
    let workload = ctx.server.id("/bench/ban/workload")?;
    ctx.server
        .create_entry(&workload, &agent.id, &ctx.selector)
        .await?;
    wait_for_svid(&agent.socket, &workload, PATIENCE).await?;
    let mut client = workload_client(&agent.socket).await?;
    let mut stream = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await?
        .into_inner();
    stream.message().await?.context("the stream ended early")?;

    let entries = (0..n)
        .map(|i| {
            Ok(signet_proto::admin::Entry {
                spiffe_id: ctx.server.id(&format!("/bench/ban/{i}"))?,
                parent_id: agent.id.to_string(),
                selectors: vec![SELECTOR.into()],
                ..Default::default()
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::env::create_entries(&ctx.server.admin, entries).await?;

    let start = Instant::now();
    ctx.server
        .admin
        .clone()
        .ban_agent(AgentRequest {
            spiffe_id: agent.id.to_string(),
        })
        .await?;
    let withdrawn = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.message().await {
                Ok(Some(msg)) if msg.svids.is_empty() => return anyhow::Ok(()),
                Ok(Some(_)) => continue,
                Ok(None) => anyhow::bail!("the stream ended without a status"),
                Err(s) if s.code() == tonic::Code::PermissionDenied => return Ok(()),
                Err(s) => anyhow::bail!("the stream failed: {s}"),
            }
        }
    })
    .await
    .context("the ban never reached the stream")?;
    withdrawn?;
    report.add(
        "revoke_during_cold_start_ms",
        start.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );
    agent.stop().await;
    Ok(())
}
