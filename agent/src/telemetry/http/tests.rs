//! Scrapes the endpoints with a minimal HTTP/1.1 client over a TCP socket,
//! as a supervisor or Prometheus would.

use signet_core::Clock;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use signet_core::{SpiffeId, SystemClock, TrustDomain};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::cache::{CachedEntry, Snapshot, Svid};
use crate::telemetry::svids;

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

fn agent_svid(not_after: SystemTime) -> Arc<AgentSvid> {
    Arc::new(AgentSvid {
        spiffe_id: SpiffeId::parse("spiffe://example.org/signet/agent/join_token/t").unwrap(),
        chain: vec![],
        key_pkcs8: Default::default(),
        not_after,
        received_at: SystemClock.now(),
        generation: 1,
        authority_id: String::new(),
    })
}

fn snapshot_with_svid(serial: &str) -> Arc<Snapshot> {
    let td = TrustDomain::new("example.org").unwrap();
    let entry = crate::test_support::entry(
        "e1",
        "spiffe://example.org/app",
        "spiffe://example.org/signet/agent/x",
        &["unix:uid:1000"],
    );
    let svid = Arc::new(Svid {
        chain: vec![vec![1]],
        key_pkcs8: Default::default(),
        not_after: SystemClock.now() + Duration::from_secs(600),
        authority_id: String::new(),
        serial_hex: serial.into(),
    });
    let mut entries = BTreeMap::new();
    entries.insert(
        "e1".to_owned(),
        CachedEntry {
            entry: entry.into(),
            svid: Some(svid),
        },
    );
    Arc::new(Snapshot {
        entries,
        ..Snapshot::empty(td)
    })
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing in\n{body}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn live_ready_and_metrics_answer_over_http_and_counters_move() {
    let metrics = Arc::new(Metrics::new());
    let health = Health::new(Duration::from_secs(30));
    let readiness = Readiness::new(health.clone(), Arc::new(SystemClock));
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, metrics.clone(), readiness.clone()));
    let td = TrustDomain::new("example.org").unwrap();
    let (cache_tx, cache_rx) = watch::channel(Arc::new(Snapshot::empty(td)));
    tokio::spawn(svids::follow(
        metrics.clone(),
        cache_rx,
        Arc::new(SystemClock),
    ));

    assert_eq!(get(addr, "/live").await.0, 200);
    let (status, body) = get(addr, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no valid agent SVID"), "{body}");

    let (_svid_tx, svid_rx) =
        watch::channel(agent_svid(SystemClock.now() + Duration::from_secs(60)));
    readiness.set_agent_svid(svid_rx);
    let (status, body) = get(addr, "/ready").await;
    assert_eq!(status, 503);
    assert!(body.contains("server has not been reached"), "{body}");
    health.mark_reached_server();
    assert_eq!(get(addr, "/ready").await.0, 200);

    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "signet_agent_svids_issued_total",
        "signet_agent_svid_rotations_total",
        "signet_agent_workload_attestation_failures_total",
        "signet_agent_connected_workloads",
        "signet_agent_svids_held",
        "signet_agent_seconds_to_next_expiry",
    ] {
        assert_eq!(metric(&body, name), 0.0, "{name}");
    }
    assert!(
        body.contains("# TYPE signet_agent_workload_api_duration_seconds histogram"),
        "{body}"
    );

    cache_tx.send(snapshot_with_svid("aa")).unwrap();
    cache_tx.send(snapshot_with_svid("bb")).unwrap();
    signet_runtime::rpc::ObserveRpc::rpc(
        metrics.as_ref(),
        "SpiffeWorkloadAPI",
        "FetchX509SVID",
        std::time::Duration::from_millis(3),
    );
    let mut body = String::new();
    for _ in 0..50 {
        body = get(addr, "/metrics").await.1;
        if metric(&body, "signet_agent_svid_rotations_total") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metric(&body, "signet_agent_svids_issued_total") >= 1.0,
        "{body}"
    );
    assert_eq!(metric(&body, "signet_agent_svids_held"), 1.0);
    let next = metric(&body, "signet_agent_seconds_to_next_expiry");
    assert!(next > 500.0 && next <= 600.0, "{next}");
    assert!(
        body.contains(
            "signet_agent_workload_api_duration_seconds_count{method=\"FetchX509SVID\"} 1\n"
        ),
        "{body}"
    );
}

#[tokio::test]
async fn an_expired_agent_svid_or_a_ban_is_not_ready() {
    let health = Health::new(Duration::from_secs(30));
    health.mark_reached_server();
    let readiness = Readiness::new(health.clone(), Arc::new(SystemClock));
    let (_tx, rx) = watch::channel(agent_svid(SystemClock.now() - Duration::from_secs(1)));
    readiness.set_agent_svid(rx);
    assert_eq!(readiness.check(), Err("no valid agent SVID".into()));
    let readiness = Readiness::new(health.clone(), Arc::new(SystemClock));
    let (_tx, rx) = watch::channel(agent_svid(SystemClock.now() + Duration::from_secs(60)));
    readiness.set_agent_svid(rx);
    assert_eq!(readiness.check(), Ok(()));
    health.set_status(crate::health::Status::Banned, "agent is banned");
    assert_eq!(readiness.check(), Err("agent is banned".into()));
}
