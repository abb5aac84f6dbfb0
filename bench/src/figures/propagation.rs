//! `propagation_create_p99_ms` / `propagation_delete_p99_ms`: an entry
//! created through the Admin API until its SVID arrives on an open
//! FetchX509SVID stream, and deleted until the stream withdraws it.

use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context;
use signet_proto::workload::X509svidRequest;

use super::Ctx;
use crate::env::{with_header, workload_client};
use crate::report::Report;
use crate::stats::percentile_ms;

const PATIENCE: Duration = Duration::from_secs(10);

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let (created, deleted) = measure(ctx).await?;
    report.add("propagation_create_p99_ms", created, "ms");
    report.add("propagation_delete_p99_ms", deleted, "ms");
    Ok(())
}

/// p99 of create → SVID on the stream, and of delete → withdrawn (ms).
pub async fn measure(ctx: &Ctx) -> anyhow::Result<(f64, f64)> {
    let samples = if ctx.quick { 20 } else { 100 };
    let mut client = workload_client(&ctx.agent.socket).await?;
    let mut stream = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await?
        .into_inner();
    let mut created = Vec::new();
    let mut deleted = Vec::new();
    for i in 0..samples {
        let id = ctx.server.id(&format!("/bench/propagation/{i}"))?;
        let start = Instant::now();
        let entry = ctx
            .server
            .create_entry(&id, &ctx.agent.id, &ctx.selector)
            .await?;
        wait(&mut stream, |ids| ids.contains(&id)).await?;
        created.push(start.elapsed());

        let start = Instant::now();
        ctx.server.delete_entry(&entry).await?;
        wait(&mut stream, |ids| !ids.contains(&id)).await?;
        deleted.push(start.elapsed());
    }
    Ok((
        percentile_ms(&mut created, 99.0),
        percentile_ms(&mut deleted, 99.0),
    ))
}

/// Reads the stream until the SPIFFE IDs it carries satisfy `done`.
async fn wait(
    stream: &mut tonic::Streaming<signet_proto::workload::X509svidResponse>,
    done: impl Fn(&[String]) -> bool,
) -> anyhow::Result<()> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let msg = stream.message().await?.context("stream ended")?;
            let ids: Vec<String> = msg.svids.into_iter().map(|s| s.spiffe_id).collect();
            if done(&ids) {
                return anyhow::Ok(());
            }
        }
    })
    .await
    .context("the stream did not change in time")?
}
