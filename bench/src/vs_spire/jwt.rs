//! `vs_spire_jwt_fetch_p99`: FetchJWTSVID for an audience the agent has
//! already minted for (its cache), one call after another on one
//! connection; `vs_spire_validate_per_s`: ValidateJWTSVID calls/s from
//! `CLIENTS` connections, the same client as `jwt_validate_ratio`'s.
//! Rounds alternate between the systems.

use std::time::Duration;

use anyhow::Context;
use signet_proto::workload::JwtsvidRequest;
use tokio::time::Instant;

use super::system::System;
use crate::env::{with_header, workload_client, Workload};
use crate::figures::jwt::{api_round, AUDIENCE, CLIENTS};

/// One FetchJWTSVID; the token.
async fn fetch(client: &mut Workload, spiffe_id: &str) -> anyhow::Result<String> {
    Ok(client
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![AUDIENCE.into()],
            spiffe_id: spiffe_id.to_owned(),
        }))
        .await?
        .into_inner()
        .svids
        .into_iter()
        .next()
        .context("no JWT-SVID")?
        .svid)
}

/// A connected client whose audience is already cached by the agent.
pub async fn warm<S: System>(system: &S) -> anyhow::Result<(Workload, String)> {
    let mut client = workload_client(system.socket()).await?;
    let token = fetch(&mut client, system.workload_id()).await?;
    Ok((client, token))
}

/// `calls` FetchJWTSVIDs one after another; each one's latency.
pub async fn fetch_round<S: System>(
    system: &S,
    client: &mut Workload,
    calls: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        fetch(client, system.workload_id()).await?;
        out.push(start.elapsed());
    }
    Ok(out)
}

/// `CLIENTS` connections to `system`'s agent.
pub async fn clients<S: System>(system: &S) -> anyhow::Result<Vec<Workload>> {
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(workload_client(system.socket()).await?);
    }
    Ok(clients)
}

/// ValidateJWTSVID calls/s for `window`.
pub async fn validate_round(
    clients: &[Workload],
    token: &str,
    window: Duration,
) -> anyhow::Result<f64> {
    api_round(clients, token, window).await
}
