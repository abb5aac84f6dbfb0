//! `jwt_validate_ratio`: ValidateJWTSVID calls per second through the
//! agent's Workload API ÷ raw ES256 verifies per second on every core.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use signet_core::jwt::{Alg, JwkSet, JwtPublicKey};
use signet_proto::workload::{JwtBundlesRequest, JwtsvidRequest, ValidateJwtsvidRequest};

use super::Ctx;
use crate::env::{with_header, workload_client};
use crate::report::Report;
use crate::stats::parallel_rate;

const AUDIENCE: &str = "signet-bench";
const CLIENTS: usize = 32;

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

    let window = ctx.window();
    let raw = parallel_rate(window, || {
        u64::from(key.verify(Alg::Es256, signed.as_bytes(), &sig).is_ok())
    });

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = workload_client(&ctx.agent.socket).await?;
        let (token, done, failed) = (token.clone(), done.clone(), failed.clone());
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
    let api = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        anyhow::bail!("{failed} ValidateJWTSVID calls failed");
    }
    report.add("jwt_validate_per_s", api, "1/s");
    report.add("jwt_raw_verify_per_s", raw, "1/s");
    report.add("jwt_validate_ratio", api / raw, "ratio");
    Ok(())
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
