//! What the agent answers on `/ready` and `/metrics` (the HTTP side is
//! `signet_runtime::probes`'s, tested there).

use signet_core::Clock;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use signet_core::{SpiffeId, SystemClock, TrustDomain, X509Svid};

use super::*;
use crate::cache::{CachedEntry, Snapshot, Svid};
use crate::telemetry::svids;

fn agent_svid(not_after: SystemTime) -> Arc<AgentSvid> {
    Arc::new(AgentSvid {
        x509: X509Svid {
            spiffe_id: SpiffeId::parse("spiffe://example.org/signet/agent/join_token/t").unwrap(),
            chain: vec![],
            not_after,
            serial_hex: "01".into(),
            authority_id: "".into(),
        },
        key: crate::attest::key::AgentKey::Software(Default::default()),
        received_at: SystemClock.now(),
        generation: 1,
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
        x509: X509Svid {
            spiffe_id: SpiffeId::parse("spiffe://example.org/app").unwrap(),
            chain: vec![vec![1]],
            not_after: SystemClock.now() + Duration::from_secs(600),
            authority_id: "".into(),
            serial_hex: serial.into(),
        },
        key_pkcs8: Default::default(),
    });
    let mut entries = BTreeMap::new();
    entries.insert(
        "e1".into(),
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
async fn ready_and_metrics_answer_and_counters_move() {
    let metrics = Arc::new(Metrics::new());
    let health = Health::new(Duration::from_secs(30));
    let readiness = Readiness::new(health.clone(), Arc::new(SystemClock));
    let probes = AgentProbes {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let td = TrustDomain::new("example.org").unwrap();
    let (cache_tx, cache_rx) = watch::channel(Arc::new(Snapshot::empty(td)));
    tokio::spawn(svids::follow(
        metrics.clone(),
        cache_rx,
        Arc::new(SystemClock),
    ));

    assert_eq!(probes.ready().await, Err("no valid agent SVID".into()));

    let (_svid_tx, svid_rx) =
        watch::channel(agent_svid(SystemClock.now() + Duration::from_secs(60)));
    readiness.set_agent_svid(svid_rx);
    assert_eq!(
        probes.ready().await,
        Err("the server has not been reached yet".into())
    );
    health.mark_reached_server();
    assert_eq!(probes.ready().await, Ok(()));

    let body = probes.metrics();
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

    // Let the follower take the empty cache as its start.
    tokio::task::yield_now().await;
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
        body = probes.metrics();
        if metric(&body, "signet_agent_svids_issued_total") >= 1.0 {
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
