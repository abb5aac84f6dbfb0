//! `signet-bench`: starts a real server and agent, drives them, and prints
//! each figure next to the raw cost of the same work measured in this run.
#![forbid(unsafe_code)]

mod app;
mod child;
mod child_agent;
mod child_server;
mod echo;
mod env;
mod figures;
mod plot;
mod report;
mod soak;
mod stats;
mod vs_spire;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "signet-bench", about = "Measure Signet against the raw cost")]
pub struct Args {
    /// Fewer samples and shorter runs (under a minute on 2 cores).
    #[arg(long)]
    pub quick: bool,
    /// Where the figures are written as JSON.
    #[arg(long, default_value = "target/bench.json")]
    pub json: std::path::PathBuf,
    /// Run only the figures whose group name contains one of these
    /// (jwt, fetch, issue, propagation, agent_rss, cold_start_ban,
    /// server_sync, federation, authz, pkcs11 (SoftHSM2); on PostgreSQL:
    /// pg, pg_server_sync,
    /// ha_failover).
    #[arg(long)]
    pub only: Vec<String>,
    /// Instead of the figures against raw costs: the same scenarios on
    /// Signet and on SPIRE (built once by `scripts/build-spire`), with
    /// Signet ÷ SPIRE for each (`--only` names vs_spire_propagation,
    /// vs_spire_fetch, vs_spire_jwt_fetch, vs_spire_validate,
    /// vs_spire_agent_rss, vs_spire_sync, vs_spire_issue,
    /// vs_spire_server_rss).
    #[arg(long)]
    pub vs_spire: bool,
    /// Instead of the figures: a soak of SECS seconds (600 when none is
    /// given): 1,000 workload streams, 30 s SVID TTLs, entries created and
    /// deleted at 10/s, the server restarted at half time.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "600")]
    pub soak: Option<u64>,
    /// Runs nothing: draws the Signet-vs-SPIRE figures of the run whose
    /// JSON `--json` names as bars in this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// One FetchX509SVID on SOCKET; prints its microseconds (the fetch
    /// figure's workload processes run the bench binary this way).
    #[arg(long, value_name = "SOCKET", hide = true)]
    pub fetch_once: Option<std::path::PathBuf>,
    /// One echo call on SOCKET; prints its microseconds.
    #[arg(long, value_name = "SOCKET", hide = true)]
    pub echo_once: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The in-process server's and agent's logs, when asked for (they cost
    // time, so none by default).
    if std::env::var_os("RUST_LOG").is_some() {
        signet_runtime::logging::init(false);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(svg) = &args.plot {
        return plot::plot(&args.json, svg);
    }
    if let Some(secs) = args.soak {
        return rt.block_on(soak::run(secs, &args.json));
    }
    if let Some(socket) = &args.fetch_once {
        return rt.block_on(figures::fetch::once_and_print(socket, true));
    }
    if let Some(socket) = &args.echo_once {
        return rt.block_on(figures::fetch::once_and_print(socket, false));
    }
    rt.block_on(app::run(args))
}
