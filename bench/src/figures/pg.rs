//! The figures on PostgreSQL, two servers on one database (issue 15):
//! `ha_propagation_p99_ms` (an entry created through server A until its
//! SVID is on a workload stream of an agent synced to B; deletion beside
//! it), `pg_issue_ratio` and the other issuing figures with server A's
//! datastore on PostgreSQL, `pg_sync_10k_ms` (an agent's cold start with
//! 10k entries; full runs) and the agent RSS figures beside it. The SQLite
//! figures of the same run are the ones without a prefix.

use std::time::Duration;

use anyhow::Context;

use super::{agent_rss, issue, propagation, Ctx};
use crate::env::{start_agent_at, start_server_on, wait_for_svid};
use crate::report::Report;

/// A fresh database on the run's cluster (`SIGNET_TEST_POSTGRES`, else one
/// this process starts).
pub async fn fresh_database() -> anyhow::Result<String> {
    tokio::task::spawn_blocking(signet_tests::postgres::fresh_database)
        .await
        .context("creating a PostgreSQL database")
}

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let url = fresh_database().await?;
    let dir = ctx.dir.join("pg");
    let a = start_server_on(&dir.join("a"), Some(&url)).await?;
    let b = start_server_on(&dir.join("b"), Some(&url)).await?;
    // Attested with A's token, syncing with B.
    let agent = start_agent_at(&a, &b.node_addr(), &dir).await?;
    let workload_id = a.id("/bench/workload")?;
    a.create_entry(&workload_id, &agent.id, &ctx.selector)
        .await?;
    wait_for_svid(&agent.socket, &workload_id, Duration::from_secs(30))
        .await
        .context("the agent synced to B never served the entry made on A")?;
    let pg = Ctx {
        server: a,
        agent,
        dir: dir.clone(),
        quick: ctx.quick,
        workload_id,
        selector: ctx.selector.clone(),
    };
    let (created, deleted) = propagation::measure(&pg).await?;
    report.add("ha_propagation_p99_ms", created, "ms");
    report.add("ha_propagation_delete_p99_ms", deleted, "ms");
    report.set_prefix("pg_");
    // The cold start first: after the issuing figure's 150k serials,
    // PostgreSQL's autovacuum works through them for seconds, on the same
    // two cores.
    let measured = async {
        agent_rss::run(&pg, report).await.context("agent_rss")?;
        issue::run(&pg, report).await.context("issue")
    }
    .await;
    report.set_prefix("");
    measured?;
    pg.agent.stop().await;
    pg.server.running.stop().await;
    b.running.stop().await;
    Ok(())
}
