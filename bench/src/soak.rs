//! `signet-bench --soak SECS` (600 when no SECS is given): a
//! `signet-server` and a `signet-agent` as child processes, 1,000 workload
//! connections of this process on open FetchX509SVID streams (4 entries
//! match them, 30 s SVID TTLs, so every SVID rotates every ~15 s), entries
//! of the agent created and deleted at 10/s (also 30 s TTLs, not served),
//! and the server stopped (SIGTERM) and started again at half time.
//! Figures:
//! - `soak_agent_rss_growth_pct`, `soak_server_rss_growth_pct`: RSS from
//!   minute 2 to the end (the server: of each of its two lives, from its
//!   minute 2 to its end, the worse); goal < 5.
//! - `soak_stream_errors`: workload streams that failed or ended; goal 0.
//! - `soak_expired_served`: SVIDs already expired when a message carried
//!   them, plus stream-seconds in which a workload's newest message held
//!   an expired SVID (the agent failed to rotate in time); goal 0.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use signet_core::{Clock, SystemClock};
use signet_proto::admin::Entry;
use signet_proto::workload::X509svidRequest;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::child::rss;
use crate::child_agent::ChildAgent;
use crate::child_server::ChildServer;
use crate::env::{join_token, my_uid_selector, wait_for_svid, with_header, workload_client, Admin};
use crate::report::{machine, Report};

const WORKLOADS: usize = 1_000;
const SERVED_ENTRIES: usize = 4;
const TTL_SECS: u32 = 30;
/// Churn: one entry created every this long, the oldest deleted once this
/// many are alive (10 created and 10 deleted per second).
const CHURN_EVERY: Duration = Duration::from_millis(100);
const CHURN_ALIVE: usize = 300;
const NOT_SERVED: &str = "unix:uid:4294967291";
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What the workload tasks count.
#[derive(Default)]
struct Counts {
    stream_errors: AtomicU64,
    expired_in_messages: AtomicU64,
    expired_held_seconds: AtomicU64,
    messages: AtomicU64,
    /// Per workload: the soonest `not_after` (Unix seconds) of its newest
    /// message's SVIDs.
    soonest: Vec<AtomicU64>,
}

pub async fn run(secs: u64, json: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(secs >= 60, "--soak needs at least 60 seconds");
    let total = Duration::from_secs(secs);
    // Minute 2 of a 10-minute run; proportionally earlier in shorter ones.
    let settle = Duration::from_secs(120).min(total / 5);
    let dir = tempfile::Builder::new().prefix("sgs").tempdir()?;
    let mut server = ChildServer::start(&dir.path().join("server"), None).await?;
    let td = server.api.td.clone();
    let (token, agent_id) = join_token(&server.api.admin, &td).await?;
    let agent = ChildAgent::spawn(
        &dir.path().join("agent"),
        &server.api.addr,
        &td.to_string(),
        &token,
    )?;
    let selector = my_uid_selector()?;
    let mut first = String::new();
    for i in 0..SERVED_ENTRIES {
        let id = td.id(&format!("/soak/workload/{i}"))?.to_string();
        create(&server.api.admin, &id, &agent_id.to_string(), &selector).await?;
        first = id;
    }
    wait_for_svid(&agent.socket, &first, Duration::from_secs(60)).await?;
    println!(
        "soak: {secs} s, {WORKLOADS} workload streams, {SERVED_ENTRIES} served entries, \
         TTL {TTL_SECS} s, churn 10/s, server restarted at {} s",
        secs / 2
    );

    let counts = Arc::new(Counts {
        soonest: (0..WORKLOADS).map(|_| AtomicU64::new(u64::MAX)).collect(),
        ..Default::default()
    });
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    for w in 0..WORKLOADS {
        tasks.push(tokio::spawn(workload(
            agent.socket.clone(),
            w,
            counts.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(expiry_watch(counts.clone(), stop.clone())));
    let churn = tokio::spawn(churn(
        server.api.admin.clone(),
        td.clone(),
        agent_id.to_string(),
        stop.clone(),
    ));

    let start = Instant::now();
    let agent_pid = agent.pid()?;
    let mut agent_rss = Vec::new();
    // Per server life: (seconds into the soak, MB).
    let mut server_lives: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    let mut restarted_at = None;
    while start.elapsed() < total {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let t = start.elapsed().as_secs_f64();
        agent_rss.push((t, rss(agent_pid).context("the agent exited")?.now_mb));
        if let (Ok(pid), Some(life)) = (server.pid(), server_lives.last_mut()) {
            life.push((t, rss(pid)?.now_mb));
        }
        // A line a minute: the shape of the growth, not only its ends.
        if agent_rss.len() % 12 == 0 {
            let server_mb = server_lives
                .last()
                .and_then(|l| l.last())
                .map_or(0.0, |s| s.1);
            let agent_mb = agent_rss.last().map_or(0.0, |s| s.1);
            println!("soak: {t:.0} s agent {agent_mb:.1} MB server {server_mb:.1} MB");
        }
        if restarted_at.is_none() && start.elapsed() >= total / 2 {
            server.restart().await.context("restarting the server")?;
            restarted_at = Some(start.elapsed().as_secs_f64());
            server_lives.push(Vec::new());
            println!(
                "soak: server restarted at {:.0} s",
                start.elapsed().as_secs_f64()
            );
        }
    }
    let _ = stop_tx.send(true);
    let (created, deleted, admin_errors) = churn.await?;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }

    let mut report = Report::new();
    let settle_s = settle.as_secs_f64();
    report.add("soak_seconds", secs as f64, "s");
    report.add(
        "soak_agent_rss_growth_pct",
        growth(&agent_rss, 0.0, settle_s)?,
        "%",
    );
    let starts = [0.0, restarted_at.unwrap_or(0.0)];
    let server_growth = server_lives
        .iter()
        .zip(starts)
        .filter(|(life, _)| !life.is_empty())
        .map(|(life, from)| growth(life, from, settle_s))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .fold(f64::MIN, f64::max);
    report.add("soak_server_rss_growth_pct", server_growth, "%");
    report.add(
        "soak_stream_errors",
        counts.stream_errors.load(Ordering::Relaxed) as f64,
        "count",
    );
    let expired = counts.expired_in_messages.load(Ordering::Relaxed)
        + counts.expired_held_seconds.load(Ordering::Relaxed);
    report.add("soak_expired_served", expired as f64, "count");
    report.add(
        "soak_expired_in_messages",
        counts.expired_in_messages.load(Ordering::Relaxed) as f64,
        "count",
    );
    report.add(
        "soak_expired_held_stream_seconds",
        counts.expired_held_seconds.load(Ordering::Relaxed) as f64,
        "count",
    );
    report.add(
        "soak_messages",
        counts.messages.load(Ordering::Relaxed) as f64,
        "count",
    );
    report.add("soak_entries_created", created as f64, "count");
    report.add("soak_entries_deleted", deleted as f64, "count");
    // Admin calls refused while the server was down (not a goal).
    report.add("soak_admin_errors", admin_errors as f64, "count");
    for (i, life) in server_lives.iter().enumerate() {
        if let (Some(first), Some(last)) = (life.first(), life.last()) {
            report.add(
                &format!("soak_server_life{}_first_mb", i + 1),
                first.1,
                "MB",
            );
            report.add(&format!("soak_server_life{}_last_mb", i + 1), last.1, "MB");
        }
    }
    if let (Some(first), Some(last)) = (agent_rss.first(), agent_rss.last()) {
        report.add("soak_agent_rss_first_mb", first.1, "MB");
        report.add("soak_agent_rss_last_mb", last.1, "MB");
    }
    report.write_json(json, &machine(), false)?;
    println!("wrote {}", json.display());
    drop(agent);
    server.kill9().await?;
    Ok(())
}

/// Growth (%) from the first sample at least `settle` after `from` to the
/// last sample.
fn growth(samples: &[(f64, f64)], from: f64, settle: f64) -> anyhow::Result<f64> {
    let base = samples
        .iter()
        .find(|(t, _)| *t >= from + settle)
        .context("no sample after the settling time")?
        .1;
    let last = samples.last().context("no samples")?.1;
    Ok((last - base) / base * 100.0)
}

async fn create(admin: &Admin, id: &str, parent: &str, selector: &str) -> anyhow::Result<String> {
    let entry = Entry {
        spiffe_id: id.to_owned(),
        parent_id: parent.to_owned(),
        selectors: vec![selector.to_owned()],
        x509_svid_ttl: TTL_SECS,
        ..Default::default()
    };
    Ok(admin.clone().create_entry(entry).await?.into_inner().id)
}

/// One workload: a stream held open (reopened after a failure, which is
/// counted), every message checked for expired SVIDs.
async fn workload(
    socket: std::path::PathBuf,
    w: usize,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) {
    let clock = SystemClock;
    while !*stop.borrow() {
        let opened = async {
            let mut client = workload_client(&socket).await?;
            anyhow::Ok(
                client
                    .fetch_x509svid(with_header(X509svidRequest {}))
                    .await?
                    .into_inner(),
            )
        };
        let mut stream = match opened.await {
            Ok(s) => s,
            Err(_) => {
                counts.stream_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let msg = tokio::select! {
                _ = stop.changed() => return,
                m = stream.message() => m,
            };
            let Ok(Some(msg)) = msg else {
                counts.stream_errors.fetch_add(1, Ordering::Relaxed);
                break;
            };
            counts.messages.fetch_add(1, Ordering::Relaxed);
            let now = unix(clock.now());
            let mut soonest = u64::MAX;
            for svid in &msg.svids {
                let not_after = signet_agent::cli::fetch::split_der(&svid.x509_svid)
                    .ok()
                    .and_then(|chain| chain.into_iter().next())
                    .and_then(|leaf| signet_core::x509::cert_info(&leaf).ok())
                    .map_or(0, |info| unix(info.not_after));
                if not_after <= now {
                    counts.expired_in_messages.fetch_add(1, Ordering::Relaxed);
                }
                soonest = soonest.min(not_after);
            }
            if let Some(slot) = counts.soonest.get(w) {
                slot.store(soonest, Ordering::Relaxed);
            }
        }
    }
}

/// Every second: each workload whose newest message holds an expired
/// SVID counts one stream-second.
async fn expiry_watch(counts: Arc<Counts>, mut stop: watch::Receiver<bool>) {
    let clock = SystemClock;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let now = unix(clock.now());
        let expired = counts
            .soonest
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) <= now)
            .count();
        counts
            .expired_held_seconds
            .fetch_add(expired as u64, Ordering::Relaxed);
    }
}

/// Creates an entry every `CHURN_EVERY` and deletes the oldest once
/// `CHURN_ALIVE` are alive; returns (created, deleted, refused calls).
async fn churn(
    admin: Admin,
    td: signet_core::TrustDomain,
    parent: String,
    mut stop: watch::Receiver<bool>,
) -> (u64, u64, u64) {
    let (mut created, mut deleted, mut errors) = (0u64, 0u64, 0u64);
    let mut alive = VecDeque::new();
    let mut tick = tokio::time::interval(CHURN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return (created, deleted, errors),
            _ = tick.tick() => {}
        }
        n += 1;
        let Ok(id) = td.id(&format!("/soak/churn/{n}")) else {
            errors += 1;
            continue;
        };
        match create(&admin, &id.to_string(), &parent, NOT_SERVED).await {
            Ok(entry) => {
                created += 1;
                alive.push_back(entry);
            }
            Err(_) => errors += 1,
        }
        if alive.len() > CHURN_ALIVE {
            if let Some(oldest) = alive.pop_front() {
                let req = signet_proto::admin::DeleteEntryRequest { id: oldest.clone() };
                match admin.clone().delete_entry(req).await {
                    Ok(_) => deleted += 1,
                    Err(_) => {
                        errors += 1;
                        alive.push_front(oldest);
                    }
                }
            }
        }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::growth;

    #[test]
    fn growth_is_from_the_first_sample_after_settling_to_the_last() {
        let samples = [(5.0, 10.0), (120.0, 20.0), (125.0, 21.0), (300.0, 21.0)];
        assert_eq!(growth(&samples, 0.0, 120.0).unwrap(), 5.0);
        // A life that started at 200 s has no sample 120 s in.
        assert!(growth(&samples, 200.0, 120.0).is_err());
    }
}
