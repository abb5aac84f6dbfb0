//! Wiring: a server and an agent in this process, one workload entry for
//! this process, then each figure group in turn.

use std::time::Duration;

use anyhow::Context;

use crate::child_server::ChildServer;
use crate::env::{my_uid_selector, start_agent, start_server, wait_for_svid};
use crate::figures::{self, Ctx};
use crate::report::{machine, Report};
use crate::Args;

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.vs_spire {
        let mut report = Report::new();
        crate::vs_spire::run(&args, &mut report).await?;
        report.write_json(&args.json, &machine(), args.quick)?;
        println!("wrote {}", args.json.display());
        return Ok(());
    }
    let wanted =
        |group: &str| args.only.is_empty() || args.only.iter().any(|o| group.contains(o.as_str()));
    // Short: Unix socket paths are limited to 108 bytes.
    let dir = tempfile::Builder::new().prefix("sgb").tempdir()?;
    let server = start_server(dir.path()).await?;
    let agent = start_agent(&server, dir.path()).await?;
    let selector = my_uid_selector()?;
    let workload_id = server.id("/bench/workload")?;
    server
        .create_entry(&workload_id, &agent.id, &selector)
        .await?;
    wait_for_svid(&agent.socket, &workload_id, Duration::from_secs(30))
        .await
        .context("the agent never served the workload SVID")?;
    let ctx = Ctx {
        server,
        agent,
        dir: dir.path().to_path_buf(),
        quick: args.quick,
        workload_id,
        selector,
    };

    let mut report = Report::new();
    if wanted("jwt") {
        figures::jwt::run(&ctx, &mut report).await.context("jwt")?;
    }
    if wanted("fetch") {
        figures::fetch::run(&ctx, &mut report)
            .await
            .context("fetch")?;
    }
    if wanted("issue") {
        figures::issue::run(&ctx, &mut report)
            .await
            .context("issue")?;
    }
    if wanted("propagation") {
        figures::propagation::run(&ctx, &mut report)
            .await
            .context("propagation")?;
    }
    if wanted("agent_rss") {
        figures::agent_rss::run(&ctx, &mut report)
            .await
            .context("agent_rss")?;
    }
    if wanted("cold_start_ban") {
        figures::cold_start_ban::run(&ctx, &mut report)
            .await
            .context("cold_start_ban")?;
    }
    if wanted("server_sync") {
        figures::server_sync::run(&ctx, &mut report)
            .await
            .context("server_sync")?;
    }
    if wanted("federation") {
        figures::federation::run(&ctx, &mut report)
            .await
            .context("federation")?;
    }
    // The same on PostgreSQL, two servers on one database.
    if wanted("pg") {
        figures::pg::run(&ctx, &mut report).await.context("pg")?;
    }
    if wanted("pkcs11") {
        figures::pkcs11::run(&ctx, &mut report)
            .await
            .context("pkcs11")?;
    }
    if wanted("pg_server_sync") {
        let url = figures::pg::fresh_database().await?;
        let dir = ctx.dir.join("pg_server_sync");
        let servers = vec![
            ChildServer::start(&dir.join("a"), Some(&url)).await?,
            ChildServer::start(&dir.join("b"), Some(&url)).await?,
        ];
        report.set_prefix("pg_");
        let measured = figures::server_sync::run_on(&ctx, &mut report, servers).await;
        report.set_prefix("");
        measured.context("pg_server_sync")?;
    }
    if wanted("ha_failover") {
        figures::ha_failover::run(&ctx, &mut report)
            .await
            .context("ha_failover")?;
    }
    if wanted("authz") {
        // CPU only: off the runtime's workers.
        let quick = ctx.quick;
        let measured = tokio::task::spawn_blocking(move || {
            let mut own = Report::new();
            figures::authz::run(quick, &mut own).map(|()| own)
        })
        .await?
        .context("authz")?;
        report.extend(measured);
    }
    // The detectors ran on every figure above (armed from the first
    // sighting): a normal workload must give them nothing to find.
    report.add(
        "anomalies_found",
        ctx.server.running.metrics.anomalies_found() as f64,
        "findings",
    );
    ctx.agent.stop().await;
    ctx.server.running.stop().await;
    report.write_json(&args.json, &machine(), args.quick)?;
    println!("wrote {}", args.json.display());
    Ok(())
}
