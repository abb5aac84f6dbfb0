//! `issue_ratio`: X.509-SVIDs signed per second through the Node API
//! (several attested agents at once, batches of CSRs prepared beforehand) ÷
//! raw CSR-verify + certificate-sign pairs per second on every core.

use signet_core::{Clock, SystemClock};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use signet_core::x509::{build_csr, leaf_params, parse_csr, sign_leaf};
use signet_core::SpiffeId;
use signet_proto::node::{BatchSignX509SvidRequest, SignX509SvidParams};

use super::Ctx;
use crate::env::{attest_node_agent, NodeAgent};
use crate::report::Report;
use crate::stats::parallel_rate;

// As many agents and CSRs in flight as keep both cores busy between round
// trips (4 x 50 left the server idle part of the time).
const AGENTS: usize = 8;
const BATCH: usize = 100;
/// Matches no workload: these entries exist only to be signed for.
const SELECTOR: &str = "unix:uid:4294967294";

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let window = ctx.window();
    let mut batches = Vec::new();
    for a in 0..AGENTS {
        let agent = attest_node_agent(&ctx.server).await?;
        let mut params = Vec::new();
        for i in 0..BATCH {
            let id = ctx.server.id(&format!("/bench/issue/{a}/{i}"))?;
            let entry_id = ctx.server.create_entry(&id, &agent.id, SELECTOR).await?;
            let key = rcgen::KeyPair::generate()?;
            let csr = build_csr(&key, &SpiffeId::parse_with_path(&id)?)?;
            params.push(SignX509SvidParams { entry_id, csr });
        }
        batches.push((agent, BatchSignX509SvidRequest { params }));
    }
    let csrs: Arc<Vec<Vec<u8>>> = Arc::new(
        batches
            .iter()
            .flat_map(|(_, b)| b.params.iter().map(|p| p.csr.clone()))
            .collect(),
    );

    // The box's other load comes and goes: alternate short API and raw
    // rounds so both see the same conditions, and sum each side.
    let rounds = if ctx.quick { 6 } else { 10 };
    let round = window / rounds;
    let (mut signed, mut api_time) = (0u64, Duration::ZERO);
    let mut raw_rates = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        signed += api_round(&batches, start, round).await?;
        api_time += start.elapsed();
        raw_rates.push(raw_rate(round, &csrs)?);
    }
    let api = signed as f64 / api_time.as_secs_f64();
    let raw = raw_rates.iter().sum::<f64>() / raw_rates.len() as f64;
    report.add("issue_svids_per_s", api, "1/s");
    report.add("issue_raw_per_s", raw, "1/s");
    report.add("issue_ratio", api / raw, "ratio");
    Ok(())
}

/// Every agent sends its batch again and again until `round` has passed;
/// returns how many SVIDs were signed.
async fn api_round(
    batches: &[(NodeAgent, BatchSignX509SvidRequest)],
    start: Instant,
    round: Duration,
) -> anyhow::Result<u64> {
    let tasks: Vec<_> = batches
        .iter()
        .map(|(agent, batch)| {
            let mut client = agent.client.clone();
            let batch = batch.clone();
            tokio::spawn(async move {
                let mut signed = 0u64;
                while start.elapsed() < round {
                    let results = client
                        .batch_sign_x509_svid(batch.clone())
                        .await?
                        .into_inner()
                        .results;
                    if let Some(bad) = results.iter().find(|r| r.error_code != 0) {
                        anyhow::bail!("signing refused: {}", bad.error_message);
                    }
                    signed += results.len() as u64;
                }
                Ok(signed)
            })
        })
        .collect();
    let mut signed = 0;
    for t in tasks {
        signed += t.await??;
    }
    Ok(signed)
}

/// The same crypto the server does per SVID, with nothing around it.
fn raw_rate(window: Duration, csrs: &[Vec<u8>]) -> anyhow::Result<f64> {
    let td = signet_core::TrustDomain::new("example.org")?;
    let now = SystemClock.now();
    let ca_key = rcgen::KeyPair::generate()?;
    let ca = signet_core::x509::ca_params(&td, now, now + Duration::from_secs(86400))?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let next = std::sync::atomic::AtomicUsize::new(0);
    Ok(parallel_rate(window, || {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % csrs.len();
        let ok = parse_csr(&csrs[i]).ok().and_then(|csr| {
            let params =
                leaf_params(&csr.spiffe_id, &[], now, now + Duration::from_secs(3600)).ok()?;
            sign_leaf(&params, &csr.public_key, &issuer).ok()
        });
        u64::from(ok.is_some())
    }))
}
