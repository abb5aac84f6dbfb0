//! `signet-bench --vs-spire`: the same scenarios on Signet and on SPIRE,
//! both as child processes on loopback, driven by the same Workload API
//! client (this bench's tonic one), in rounds alternating between them.
//! Each figure prints Signet's value, SPIRE's, and their ratio, Signet ÷
//! SPIRE (of a time or memory: goal at most; of a rate: goal at least). A
//! scenario SPIRE fails is reported as that figure's outcome, with its
//! error.

mod cold_start;
mod fetch;
mod jwt;
mod propagation;
mod server_rss;
mod signet;
mod spire;
mod system;

use std::time::Duration;

use anyhow::Context;

use crate::env::my_uid_selector;
use crate::report::Report;
use crate::stats::percentile_ms;
use signet::Signet;
use spire::Spire;

pub async fn run(args: &crate::Args, report: &mut Report) -> anyhow::Result<()> {
    let wanted =
        |group: &str| args.only.is_empty() || args.only.iter().any(|o| group.contains(o.as_str()));
    let quick = args.quick;
    // Short: Unix socket paths are limited to 108 bytes.
    let dir = tempfile::Builder::new().prefix("sgv").tempdir()?;
    let selector = my_uid_selector()?;
    let signet = Signet::start(&dir.path().join("signet"), &selector)
        .await
        .context("starting Signet")?;
    let spire = Spire::start(&selector).await.context("starting SPIRE")?;
    println!(
        "# SPIRE {} (sync and cache reload every {})",
        spire_version(),
        spire::SYNC_INTERVAL
    );

    if wanted("vs_spire_propagation") {
        let rounds = if quick { 2 } else { 4 };
        let per_round = if quick { 10 } else { 25 };
        let (mut ours, mut theirs) = (
            Ok(propagation::Samples::default()),
            Ok(propagation::Samples::default()),
        );
        for r in 0..rounds {
            add(&mut ours, propagation::round(&signet, per_round, r).await);
            add(&mut theirs, propagation::round(&spire, per_round, r).await);
        }
        let p99 = |s: &mut anyhow::Result<propagation::Samples>, created: bool| match s {
            Ok(s) if created => Ok(percentile_ms(&mut s.created, 99.0)),
            Ok(s) => Ok(percentile_ms(&mut s.deleted, 99.0)),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
        compare(
            report,
            "vs_spire_propagation_create_p99",
            "ms",
            Better::Lower,
            p99(&mut ours, true),
            p99(&mut theirs, true),
        );
        compare(
            report,
            "vs_spire_propagation_delete_p99",
            "ms",
            Better::Lower,
            p99(&mut ours, false),
            p99(&mut theirs, false),
        );
    }
    if wanted("vs_spire_fetch") {
        for level in fetch::LEVELS {
            let (ours, theirs) = fetch::p99(&signet, &spire, level, quick).await;
            compare(
                report,
                &format!("vs_spire_fetch_p99_c{level}"),
                "ms",
                Better::Lower,
                ours,
                theirs,
            );
        }
    }
    if wanted("vs_spire_jwt_fetch") {
        let (ours, theirs) = jwt_fetch(&signet, &spire, quick).await;
        compare(
            report,
            "vs_spire_jwt_fetch_p99",
            "ms",
            Better::Lower,
            ours,
            theirs,
        );
    }
    if wanted("vs_spire_validate") {
        let (ours, theirs) = validate(&signet, &spire, quick).await;
        compare(
            report,
            "vs_spire_validate_per_s",
            "1/s",
            Better::Higher,
            ours,
            theirs,
        );
    }
    if wanted("vs_spire_agent_rss") || wanted("vs_spire_sync") {
        let ours = cold_start::one_agent(&signet, dir.path(), 1_000).await;
        let theirs = cold_start::one_agent(&spire, dir.path(), 1_000).await;
        compare(
            report,
            "vs_spire_agent_rss_1k",
            "MB",
            Better::Lower,
            rss(&ours),
            rss(&theirs),
        );
        // Some 30 s on each side: full runs only.
        if !quick {
            let ours = cold_start::one_agent(&signet, dir.path(), 10_000).await;
            let theirs = cold_start::one_agent(&spire, dir.path(), 10_000).await;
            let ms = |c: &anyhow::Result<system::ColdStart>| match c {
                Ok(c) => Ok(c.took.as_secs_f64() * 1000.0),
                Err(e) => Err(anyhow::anyhow!("{e:#}")),
            };
            compare(
                report,
                "vs_spire_sync_10k",
                "ms",
                Better::Lower,
                ms(&ours),
                ms(&theirs),
            );
            compare(
                report,
                "vs_spire_agent_rss_10k",
                "MB",
                Better::Lower,
                rss(&ours),
                rss(&theirs),
            );
        }
    }
    if wanted("vs_spire_issue") {
        let ours = cold_start::issue_rate(&signet, dir.path(), quick).await;
        let theirs = cold_start::issue_rate(&spire, dir.path(), quick).await;
        compare(
            report,
            "vs_spire_issue_per_s",
            "1/s",
            Better::Higher,
            ours,
            theirs,
        );
    }
    if wanted("vs_spire_server_rss") {
        // 100 agents in quick runs, under the same name (the scale is printed).
        let agents = if quick { 100 } else { server_rss::AGENTS };
        println!(
            "# server memory: {agents} agents x {} entries, synced and connected",
            server_rss::PER_AGENT
        );
        let ours = server_rss::signet(dir.path(), agents).await;
        let theirs = spire::server_rss(dir.path(), agents).await;
        compare(
            report,
            "vs_spire_server_rss_1k_agents",
            "MB",
            Better::Lower,
            ours,
            theirs,
        );
    }
    Ok(())
}

/// FetchJWTSVID p99 (ms), cached audience, rounds alternating.
async fn jwt_fetch(
    signet: &Signet,
    spire: &Spire,
    quick: bool,
) -> (anyhow::Result<f64>, anyhow::Result<f64>) {
    let (rounds, calls) = if quick { (2, 200) } else { (5, 400) };
    let mut ours = jwt::warm(signet).await.map(|c| (c.0, Vec::new()));
    let mut theirs = jwt::warm(spire).await.map(|c| (c.0, Vec::new()));
    for _ in 0..rounds {
        if let Ok((client, samples)) = &mut ours {
            match jwt::fetch_round(signet, client, calls).await {
                Ok(s) => samples.extend(s),
                Err(e) => ours = Err(e),
            }
        }
        if let Ok((client, samples)) = &mut theirs {
            match jwt::fetch_round(spire, client, calls).await {
                Ok(s) => samples.extend(s),
                Err(e) => theirs = Err(e),
            }
        }
    }
    let p99 = |r: anyhow::Result<(crate::env::Workload, Vec<Duration>)>| {
        r.map(|(_, mut s)| percentile_ms(&mut s, 99.0))
    };
    (p99(ours), p99(theirs))
}

/// ValidateJWTSVID calls/s, each system validating its own token.
async fn validate(
    signet: &Signet,
    spire: &Spire,
    quick: bool,
) -> (anyhow::Result<f64>, anyhow::Result<f64>) {
    let (rounds, slice) = if quick {
        (2, Duration::from_millis(1500))
    } else {
        (4, Duration::from_millis(2500))
    };
    let setup = |token: anyhow::Result<(crate::env::Workload, String)>,
                 clients: anyhow::Result<Vec<crate::env::Workload>>| {
        Ok::<_, anyhow::Error>((token?.1, clients?, 0.0))
    };
    let mut ours = setup(jwt::warm(signet).await, jwt::clients(signet).await);
    let mut theirs = setup(jwt::warm(spire).await, jwt::clients(spire).await);
    for _ in 0..rounds {
        for side in [&mut ours, &mut theirs] {
            if let Ok((token, clients, total)) = side {
                match jwt::validate_round(clients, token, slice).await {
                    Ok(rate) => *total += rate,
                    Err(e) => *side = Err(e),
                }
            }
        }
    }
    let mean = |r: anyhow::Result<(String, Vec<crate::env::Workload>, f64)>| {
        r.map(|(_, _, t)| t / f64::from(rounds))
    };
    (mean(ours), mean(theirs))
}

fn rss(c: &anyhow::Result<system::ColdStart>) -> anyhow::Result<f64> {
    match c {
        Ok(c) => c.rss_mb.first().copied().context("no agent measured"),
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    }
}

fn add(into: &mut anyhow::Result<propagation::Samples>, got: anyhow::Result<propagation::Samples>) {
    if let Ok(samples) = into {
        match got {
            Ok(more) => {
                samples.created.extend(more.created);
                samples.deleted.extend(more.deleted);
            }
            Err(e) => *into = Err(e),
        }
    }
}

#[derive(Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

/// `<name>_signet`, `<name>_spire` and `<name>` (Signet ÷ SPIRE), or the
/// failure of either side in their place.
fn compare(
    report: &mut Report,
    name: &str,
    unit: &str,
    better: Better,
    signet: anyhow::Result<f64>,
    spire: anyhow::Result<f64>,
) {
    let side = |report: &mut Report, who: &str, r: &anyhow::Result<f64>| match r {
        Ok(v) => report.add(&format!("{name}_{who}"), *v, unit),
        Err(e) => report.failed(&format!("{name}_{who}"), unit, &format!("{e:#}")),
    };
    side(report, "signet", &signet);
    side(report, "spire", &spire);
    let kind = match better {
        Better::Lower => "ratio",
        Better::Higher => "ratio (higher is better)",
    };
    match (signet, spire) {
        (Ok(a), Ok(b)) if b > 0.0 => report.add(name, a / b, "x"),
        (Ok(_), Ok(_)) => report.failed(name, "x", "SPIRE's value is zero"),
        (Err(_), _) => report.failed(name, "x", &format!("Signet failed; no {kind}")),
        (_, Err(e)) => report.failed(name, "x", &format!("SPIRE failed: {e:#}")),
    }
}

/// The SPIRE version the cache holds, as `spire-server --version` prints it.
fn spire_version() -> String {
    std::process::Command::new(&signet_tests::spire::spire_bins().server)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text).trim().to_owned()
        })
        .unwrap_or_else(|| "(version unknown)".into())
}
