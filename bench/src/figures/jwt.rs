//! `jwt_validate_ratio`: ValidateJWTSVID calls per second through the
//! agent's Workload API ÷ raw ES256 verifies per second on every core,
//! measured in alternating rounds so both see the same load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use signet_core::jwt::{Alg, JwkSet, JwtPublicKey};
use signet_proto::workload::{JwtBundlesRequest, JwtsvidRequest, ValidateJwtsvidRequest};

use super::Ctx;
use crate::env::{with_header, workload_client};
use crate::report::Report;
use crate::stats::parallel_rate;

pub const AUDIENCE: &str = "signet-bench";
pub const CLIENTS: usize = 32;

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let mut client = workload_client(&ctx.agent.socket).await?;
    let token = client
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![AUDIENCE.into()],
            spiffe_id: ctx.workload_id.clone(),
        }))
        .await?
        .into_inner()
        .svids
        .into_iter()
        .next()
        .context("no JWT-SVID")?
        .svid;
    let key = signing_key(&mut client, &token).await?;
    let (signed, sig) = token.rsplit_once('.').context("token has no signature")?;
    let sig = URL_SAFE_NO_PAD.decode(sig)?;
    key.verify(Alg::Es256, signed.as_bytes(), &sig)
        .context("raw verify of the agent's own token")?;

    // Raw and API rounds interleaved, so both see the same box load.
    let rounds = 4;
    let slice = ctx.window() / rounds;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(workload_client(&ctx.agent.socket).await?);
    }
    let (mut raw_total, mut api_total) = (0.0, 0.0);
    for _ in 0..rounds {
        raw_total += parallel_rate(slice, || {
            u64::from(key.verify(Alg::Es256, signed.as_bytes(), &sig).is_ok())
        });
        api_total += api_round(&clients, &token, slice).await?;
    }
    let raw = raw_total / f64::from(rounds);
    let api = api_total / f64::from(rounds);
    report.add("jwt_validate_per_s", api, "1/s");
    report.add("jwt_raw_verify_per_s", raw, "1/s");
    report.add("jwt_validate_ratio", api / raw, "ratio");
    Ok(())
}

/// ValidateJWTSVID calls per second from every client for `window`.
pub async fn api_round(
    clients: &[signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient<
        tonic::transport::Channel,
    >],
    token: &str,
    window: std::time::Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in clients {
        let mut client = client.clone();
        let (token, done, failed) = (token.to_owned(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < window {
                let r = client
                    .validate_jwtsvid(with_header(ValidateJwtsvidRequest {
                        audience: AUDIENCE.into(),
                        svid: token.clone(),
                    }))
                    .await;
                let counter = if r.is_ok() { &done } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let failed = failed.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} ValidateJWTSVID calls failed");
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// The bundle key named by the token's `kid`.
async fn signing_key(
    client: &mut crate::env::Workload,
    token: &str,
) -> anyhow::Result<JwtPublicKey> {
    let (header, _) = signet_core::jwt::parse_unverified(token)?;
    let kid = header
        .get("kid")
        .and_then(|k| k.as_str())
        .context("token has no kid")?
        .to_string();
    let bundles = client
        .fetch_jwt_bundles(with_header(JwtBundlesRequest {}))
        .await?
        .into_inner()
        .message()
        .await?
        .context("no JWT bundles")?
        .bundles;
    for doc in bundles.values() {
        let set: JwkSet = serde_json::from_slice(doc)?;
        if let Some(jwk) = set
            .keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid.as_str()))
        {
            return Ok(JwtPublicKey::from_jwk(jwk)?);
        }
    }
    anyhow::bail!("no bundle key with kid {kid}")
}
