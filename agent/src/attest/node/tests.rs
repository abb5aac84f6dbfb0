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
