//! The connector against real Node API servers of an HA group on loopback:
//! which server it uses, how it moves on when one fails, and that users who
//! see the same failure move it by one server, not one each.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::cache::{JwtMinter, NodeMinter};
use crate::health::Health;
use crate::test_support::node_server::{closed_address, Call, Group, Script, Seen};

fn group(names: &[&'static str]) -> Group {
    let servers: Vec<(&'static str, Script)> =
        names.iter().map(|n| (*n, Script::default())).collect();
    Group::start(&servers)
}

fn list(addresses: &[&str]) -> ServerAddresses {
    ServerAddresses::parse(&addresses.join(",")).unwrap()
}

#[tokio::test]
async fn the_first_server_that_answers_is_used_in_the_order_given() {
    let group = group(&["A", "B"]);
    let dead = closed_address();
    let (connector, _svid) =
        group.connector(list(&[&dead, group.address("A"), group.address("B")]));
    let connector = connector.with_health(Health::new(Duration::from_secs(30)));
    let health = connector.health.clone().unwrap();

    let session = connector.session().await.unwrap();
    assert_eq!(session.server.addr.to_string(), group.address("A"));
    assert_eq!(connector.server_count(), 3);
    assert_eq!(
        health.report().server.as_deref(),
        Some(group.address("A")),
        "the health file names the server in use"
    );
    let again = connector.session().await.unwrap();
    assert_eq!(again.epoch, session.epoch, "one channel, shared");
}

#[tokio::test]
async fn a_failed_server_moves_the_agent_to_the_next_address_once() {
    let group = group(&["A", "B", "C"]);
    let (connector, _svid) = group.connector(group.addresses());
    let on_a = connector.session().await.unwrap();
    assert_eq!(on_a.server.addr.to_string(), group.address("A"));

    // Two users saw A's channel die: one move, not two.
    assert!(connector.failed(on_a.epoch));
    assert!(!connector.failed(on_a.epoch));
    let on_b = connector.session().await.unwrap();
    assert_eq!(on_b.server.addr.to_string(), group.address("B"));
    assert_ne!(on_b.epoch, on_a.epoch);

    // A late report about A's channel moves nothing either.
    let unavailable = tonic::Status::unavailable("connection reset");
    assert!(
        connector.report(on_a.epoch, &unavailable),
        "a server failure"
    );
    assert!(!connector.failed(on_a.epoch));
    let still = connector.session().await.unwrap();
    assert_eq!(still.server.addr.to_string(), group.address("B"));
    assert_eq!(still.epoch, on_b.epoch);
}

#[tokio::test]
async fn a_refusal_does_not_move_the_agent() {
    let group = group(&["A", "B"]);
    let (connector, _svid) = group.connector(group.addresses());
    let on_a = connector.session().await.unwrap();
    for refusal in [
        tonic::Status::permission_denied("not yours"),
        tonic::Status::invalid_argument("bad CSR"),
        tonic::Status::not_found("no entry"),
    ] {
        assert!(!connector.report(on_a.epoch, &refusal), "{refusal:?}");
    }
    assert_eq!(connector.session().await.unwrap().epoch, on_a.epoch);
}

#[tokio::test]
async fn after_a_failover_the_agent_stays_on_the_new_server() {
    let group = group(&["A", "B"]);
    let (connector, svid_tx) = group.connector(group.addresses());
    let on_a = connector.session().await.unwrap();
    connector.failed(on_a.epoch);
    let on_b = connector.session().await.unwrap();
    assert_eq!(on_b.server.addr.to_string(), group.address("B"));

    // A is still up; a renewed agent SVID rebuilds the channel, on B.
    svid_tx.send_replace(Arc::new(group.pki.agent_svid(1)));
    let renewed = connector.session().await.unwrap();
    assert_eq!(renewed.server.addr.to_string(), group.address("B"));
    assert!(renewed.epoch > on_b.epoch, "a new channel");
}

#[tokio::test]
async fn two_users_of_a_dead_server_move_the_agent_by_one_server() {
    let mut group = group(&["A", "B", "C"]);
    let (connector, _svid) = group.connector(group.addresses());
    let late = LateConnector::default();
    late.set(Arc::new(connector));
    let minter = NodeMinter {
        connector: late.clone(),
    };
    let audience = ["aud".to_owned()];
    let first = minter.mint("e1", &audience).await.unwrap();
    assert_eq!(first.token, "token-from-A");
    assert_eq!(
        group.next_call().await,
        Seen {
            server: "A",
            call: Call::Mint
        }
    );

    group.kill("A");
    // Both find A's channel dead, both report it; each is then answered
    // by B, and C is never asked.
    let (one, two) = tokio::join!(minter.mint("e1", &audience), minter.mint("e2", &audience));
    assert_eq!(one.unwrap().token, "token-from-B");
    assert_eq!(two.unwrap().token, "token-from-B");
    let connector = late.get().unwrap();
    assert_eq!(
        connector.server().unwrap().addr.to_string(),
        group.address("B")
    );
    for _ in 0..2 {
        assert_eq!(group.next_call().await.server, "B");
    }
    assert!(group.calls.try_recv().is_err(), "C was never asked");
}

#[tokio::test]
async fn every_server_unreachable_is_one_error_after_one_try_each() {
    let group = group(&[]);
    let (connector, _svid) = group.connector(list(&[&closed_address(), &closed_address()]));
    match connector.session().await {
        Err(NodeClientError::NoServer {
            tried,
            last: Some(last),
        }) => {
            assert_eq!(tried, 2);
            assert!(matches!(*last, NodeClientError::Connect { .. }), "{last}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_black_holed_server_is_given_up_after_the_connect_timeout() {
    // Listening but never answering: the TCP handshake completes in the
    // kernel, the TLS one never does.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let target = Target {
        name: addr.to_string().into(),
        addr,
    };
    let pki = crate::test_support::node_server::TestPki::new();
    let tls = tls::client_config(
        ServerTrust::Bundle(pki.bundle()),
        server_id(&crate::test_support::node_server::td()).unwrap(),
        None,
    )
    .unwrap();
    let start = tokio::time::Instant::now();
    let err = connect_to(&target, tls).await.err().unwrap();
    assert!(
        matches!(
            err,
            NodeClientError::ConnectTimeout { .. } | NodeClientError::Connect { .. }
        ),
        "{err}"
    );
    assert_eq!(start.elapsed(), CONNECT_TIMEOUT);
    drop(silent);
}
