//! First attestation against an HA group: the first server that answers
//! attests the agent; one that answered with a refusal is not asked again
//! elsewhere (a join token is single-use).

use super::*;
use crate::config::{FileConfig, RunArgs};
use crate::test_support::node_server::{closed_address, Call, Group, Script, Seen};

fn config(servers: &[&str]) -> RuntimeConfig {
    let args = RunArgs {
        server_address: Some(servers.join(",")),
        ..Default::default()
    };
    RuntimeConfig::merge(FileConfig::default(), &args).unwrap()
}

async fn attest(group: &Group, servers: &[&str]) -> Result<Attested, NodeAttestError> {
    attest_with(
        &config(servers),
        &JoinToken("t1".into()),
        ServerTrust::Bundle(group.pki.bundle()),
        &signet_core::SystemClock,
    )
    .await
}

fn attest_call(server: &'static str) -> Seen {
    Seen {
        server,
        call: Call::Attest {
            join_token: "t1".into(),
        },
    }
}

#[tokio::test]
async fn attestation_tries_the_next_server_when_one_is_unreachable() {
    let mut group = Group::start(&[("A", Script::default())]);
    let dead = closed_address();
    let attested = attest(&group, &[&dead, group.address("A")]).await.unwrap();
    assert_eq!(
        attested.svid.x509.spiffe_id.to_string(),
        "spiffe://example.org/signet/agent/join_token/t1"
    );
    assert_eq!(attested.bundle, vec![group.pki.ca.clone()]);
    assert_eq!(group.next_call().await, attest_call("A"));
}

#[tokio::test]
async fn a_server_whose_connection_breaks_is_left_for_the_next() {
    let breaks = Script {
        refuse_attest: Some(tonic::Code::Unavailable),
        ..Default::default()
    };
    let mut group = Group::start(&[("A", breaks), ("B", Script::default())]);
    let servers = [group.address("A").to_owned(), group.address("B").to_owned()];
    let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
    attest(&group, &servers).await.unwrap();
    assert_eq!(group.next_call().await, attest_call("A"));
    assert_eq!(group.next_call().await, attest_call("B"));
}

#[tokio::test]
async fn a_refused_join_token_is_not_tried_on_another_server() {
    let refuses = Script {
        refuse_attest: Some(tonic::Code::PermissionDenied),
        ..Default::default()
    };
    let mut group = Group::start(&[("A", refuses), ("B", Script::default())]);
    let servers = [group.address("A").to_owned(), group.address("B").to_owned()];
    let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
    let err = attest(&group, &servers).await.err().unwrap();
    assert!(
        matches!(
            err,
            NodeAttestError::Refused {
                code: tonic::Code::PermissionDenied,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.needs_new_credentials());
    assert_eq!(group.next_call().await, attest_call("A"));
    assert!(group.calls.try_recv().is_err(), "B was never asked");
}

#[tokio::test]
async fn no_server_reachable_is_a_connect_error_to_retry() {
    let group = Group::start(&[]);
    let err = attest(&group, &[&closed_address(), &closed_address()])
        .await
        .err()
        .unwrap();
    assert!(err.is_unreachable(), "{err}");
    assert!(!err.needs_new_credentials());
}

/// A renewal loop whose SVID expired (by its recorded expiry; the server
/// refuses renewals), configured with `token_file`; the last part keeps
/// the taint feed open (the loop stops when it closes).
fn expired_loop(
    group: &Group,
    token_file: Option<std::path::PathBuf>,
    data: &std::path::Path,
) -> (
    RenewLoop,
    watch::Receiver<Arc<AgentSvid>>,
    crate::health::Health,
    watch::Sender<std::collections::BTreeSet<String>>,
) {
    let (connector, _svid_tx) = group.connector(group.addresses());
    let mut svid = group.pki.agent_svid(0);
    svid.x509.not_after = signet_core::SystemClock.now() - Duration::from_secs(1);
    let (svid_tx, svid_rx) = watch::channel(Arc::new(svid));
    let args = RunArgs {
        server_address: Some(group.address("A").to_owned()),
        reattest_token_file: token_file,
        ..Default::default()
    };
    let config = RuntimeConfig::merge(FileConfig::default(), &args).unwrap();
    let storage = crate::storage::Storage::open(data).unwrap();
    let health = crate::health::Health::new(Duration::from_secs(30));
    let (tainted_tx, tainted) = watch::channel(Default::default());
    let renew = RenewLoop {
        connector: Arc::new(connector),
        storage: storage.clone(),
        bundle: group.pki.bundle(),
        svid_tx,
        tainted,
        health: health.clone(),
        clock: Arc::new(signet_core::SystemClock),
        prefetch: None,
        reattest: Reattest::new(config, storage),
    };
    (renew, svid_rx, health, tainted_tx)
}

#[tokio::test]
async fn an_agent_whose_svid_expired_unrenewed_attests_again_with_a_new_token() {
    let group = Group::start(&[("A", Script::default())]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("reattest-token");
    std::fs::write(&token_file, "t2\n").unwrap();
    let (renew, mut svid_rx, health, _tainted) =
        expired_loop(&group, Some(token_file), &dir.path().join("data"));
    let task = tokio::spawn(renew.run());
    let fresh = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            svid_rx.changed().await.unwrap();
            let s = svid_rx.borrow_and_update().clone();
            if s.generation == 1 {
                return s;
            }
        }
    })
    .await
    .expect("attested again");
    assert_eq!(
        fresh.x509.spiffe_id.to_string(),
        "spiffe://example.org/signet/agent/join_token/t2"
    );
    assert_eq!(health.report().status, crate::health::Status::Healthy);
    // The new identity is what a restart finds.
    let stored = crate::storage::Storage::open(&dir.path().join("data"))
        .unwrap()
        .load_identity()
        .unwrap()
        .unwrap();
    assert_eq!(stored.chain, fresh.x509.chain);
    task.abort();
}

#[tokio::test]
async fn without_a_way_to_attest_again_the_health_report_says_what_to_do() {
    let group = Group::start(&[("A", Script::default())]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("reattest-token");
    let (renew, _svid_rx, health, _tainted) =
        expired_loop(&group, Some(token_file.clone()), &dir.path().join("data"));
    let task = tokio::spawn(renew.run());
    let mut reports = health.subscribe();
    let report = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let r = reports.borrow_and_update().clone();
            if r.status == crate::health::Status::AgentSvidExpired {
                return r;
            }
            reports.changed().await.unwrap();
        }
    })
    .await
    .expect("an expired status");
    assert!(
        report.message.contains("no join token in") && report.message.contains("reattest-token"),
        "{}",
        report.message
    );
    task.abort();
}
