//! Federation (issue 16), two trust domains in this process: `a.test` (a
//! server and an agent, a workload entry federating with `b.test`) and
//! `b.test` (a server with an https_spiffe bundle endpoint, refresh hint
//! 5 s).
//! - `federation_rotation_ms`: b prepares a CA → it is on a's workload's
//!   open FetchX509SVID stream, a fetching at b's hint: the worst of the
//!   rounds (goal: under the hint + 200 ms).
//! - `federation_refresh_to_stream_ms`: the same with a's fetch asked for
//!   at once (`federation refresh`): the propagation alone, median.
//! - `bundle_endpoint_rps`: GETs/s b's endpoint serves over keep-alive
//!   connections, and `bundle_endpoint_ratio` against the same TLS and
//!   HTTP/1.1 stack serving the same bytes from memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use signet_proto::admin::{
    AuthorityKind, AuthorityKindRequest, Entry, FederationRelationship, GetBundleRequest,
    TrustDomainRequest,
};
use signet_proto::workload::{X509svidRequest, X509svidResponse};
use signet_server::federation::endpoint::{EndpointSettings, ServeProfile};
use signet_tests::federation::{EndpointConn, HttpsPeer, WebCa};
use tokio::time::Instant;

use super::Ctx;
use crate::env::{
    start_agent, start_server_configured, wait_for_svid, with_header, workload_client, Server,
};
use crate::report::Report;
use crate::stats::percentile_ms;

const HINT: Duration = Duration::from_secs(5);
const PATIENCE: Duration = Duration::from_secs(30);
/// Keep-alive connections the endpoint is driven with.
const CONNECTIONS: usize = 4;

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let dir = ctx.dir.join("fed");
    let b = start_server_configured(&dir.join("b"), |c| {
        c.trust_domain = "b.test".parse()?;
        c.federation.endpoint = Some(EndpointSettings {
            bind: "127.0.0.1:0".parse()?,
            profile: ServeProfile::HttpsSpiffe,
            refresh_hint: HINT,
        });
        Ok(())
    })
    .await?;
    let a = start_server_configured(&dir.join("a"), |c| {
        c.trust_domain = "a.test".parse()?;
        Ok(())
    })
    .await?;
    let agent = start_agent(&a, &dir.join("a")).await?;
    let url = format!(
        "https://{}",
        b.running
            .bundle_endpoint_addr
            .context("b has no bundle endpoint")?
    );
    let verifier = signet_tests::spiffe_tls::spiffe_server_verifier(&own_bundle(&b).await?);
    let (_, document) = EndpointConn::open(&url, verifier.clone())
        .await?
        .get()
        .await?;

    a.admin
        .clone()
        .create_federation_relationship(FederationRelationship {
            trust_domain: "b.test".into(),
            bundle_endpoint_url: url.clone(),
            profile: "https_spiffe".into(),
            endpoint_spiffe_id: "spiffe://b.test/signet/server".into(),
            trust_domain_bundle: document.to_vec(),
            ..Default::default()
        })
        .await?;
    let workload_id = a.id("/bench/federated")?;
    a.admin
        .clone()
        .create_entry(Entry {
            spiffe_id: workload_id.clone(),
            parent_id: agent.id.to_string(),
            selectors: vec![ctx.selector.clone()],
            federates_with: vec!["b.test".into()],
            ..Default::default()
        })
        .await?;
    wait_for_svid(&agent.socket, &workload_id, PATIENCE)
        .await
        .context("a's agent never served the federated workload")?;
    let mut client = workload_client(&agent.socket).await?;
    let mut stream = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await?
        .into_inner();
    let first = prepare_and_time(&b, &mut stream, || async { Ok(()) }).await;
    first.context("b's bundle never reached a's workload")?;

    let rounds = if ctx.quick { 3 } else { 6 };
    let mut natural = Vec::new();
    let mut asked = Vec::new();
    for _ in 0..rounds {
        natural.push(prepare_and_time(&b, &mut stream, || async { Ok(()) }).await?);
        let refresh = || async {
            a.admin
                .clone()
                .refresh_federation_relationship(TrustDomainRequest {
                    trust_domain: "b.test".into(),
                })
                .await?;
            Ok(())
        };
        asked.push(prepare_and_time(&b, &mut stream, refresh).await?);
    }
    report.add(
        "federation_rotation_ms",
        percentile_ms(&mut natural, 100.0),
        "ms",
    );
    report.add(
        "federation_refresh_to_stream_ms",
        percentile_ms(&mut asked, 50.0),
        "ms",
    );

    let served = get_rate(&url, verifier, ctx.window()).await?;
    let ca = WebCa::new();
    let raw_peer = HttpsPeer::start(&ca, &document).await;
    let raw = get_rate(&raw_peer.url, web_verifier(&ca)?, ctx.window()).await?;
    report.add("bundle_endpoint_rps", served, "req/s");
    report.add("bundle_endpoint_ratio", served / raw, "x");

    agent.stop().await;
    a.running.stop().await;
    b.running.stop().await;
    Ok(())
}

/// b's own X.509 authorities, as the verifier of its endpoint takes them.
async fn own_bundle(b: &Server) -> anyhow::Result<BTreeMap<String, Vec<Vec<u8>>>> {
    let bundle = b
        .admin
        .clone()
        .get_bundle(GetBundleRequest {})
        .await?
        .into_inner();
    Ok([(bundle.trust_domain, bundle.x509_authorities)]
        .into_iter()
        .collect())
}

/// Activates b's prepared CA (if any) and prepares a new one, runs `then`,
/// and times until the new CA is in `b.test`'s bundle on the stream.
async fn prepare_and_time<F, Fut>(
    b: &Server,
    stream: &mut tonic::Streaming<X509svidResponse>,
    then: F,
) -> anyhow::Result<Duration>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let kind = AuthorityKind::X509 as i32;
    let mut admin = b.admin.clone();
    // A prepared CA is activated first: one is prepared at a time.
    let _ = admin
        .activate_authority(AuthorityKindRequest { kind })
        .await;
    let start = Instant::now();
    let prepared = admin
        .prepare_authority(AuthorityKindRequest { kind })
        .await?
        .into_inner();
    then().await?;
    let deadline = start + PATIENCE;
    loop {
        let msg = tokio::time::timeout_at(deadline, stream.message())
            .await
            .context("the new CA never reached the stream")??
            .context("the stream ended")?;
        let held = msg.federated_bundles.get("spiffe://b.test");
        if held.is_some_and(|der| contains(der, &prepared.certificate)) {
            return Ok(start.elapsed());
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn web_verifier(ca: &WebCa) -> anyhow::Result<Arc<dyn rustls::client::danger::ServerCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for der in signet_core::pem::decode_certs(ca.pem.as_bytes())? {
        roots.add(der.into())?;
    }
    Ok(rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        signet_core::crypto::tls_provider(),
    )
    .build()?)
}

/// GETs/s over [`CONNECTIONS`] keep-alive connections for `window`.
async fn get_rate(
    url: &str,
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    window: Duration,
) -> anyhow::Result<f64> {
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        conns.push(EndpointConn::open(url, verifier.clone()).await?);
    }
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < window {
                    let (status, _) = conn.get().await?;
                    anyhow::ensure!(status == 200, "HTTP {status}");
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}
