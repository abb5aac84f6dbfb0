//! Parsing the wire, pacing reconnects, and resuming on another server.

use super::*;
use signet_core::clock::from_unix_seconds;
use signet_core::TrustDomain;
use signet_proto::node::revoked_credential::Credential;
use signet_proto::node::Selector as ProtoSelector;
use signet_proto::node::SyncResponse;
use signet_proto::node::{self, Entry, RevokedCredential};

fn wire(spiffe_id: &str, selector: (&str, &str)) -> Entry {
    Entry {
        id: "e1".into(),
        spiffe_id: spiffe_id.into(),
        parent_id: "spiffe://example.org/signet/agent/join_token/t".into(),
        selectors: vec![
            ProtoSelector {
                r#type: selector.0.into(),
                value: selector.1.into(),
            },
            ProtoSelector {
                r#type: "unix".into(),
                value: "gid:1".into(),
            },
        ],
        x509_svid_ttl: 60,
        ..Default::default()
    }
}

#[test]
fn wire_entry_becomes_a_registration_entry() {
    let e = entry_from_proto(wire("spiffe://example.org/me", ("unix", "uid:1000"))).unwrap();
    assert_eq!(e.spiffe_id.to_string(), "spiffe://example.org/me");
    assert_eq!(e.x509_svid_ttl, Some(Duration::from_secs(60)));
    assert_eq!(e.jwt_svid_ttl, None);
    let sel: Vec<String> = e.selectors.iter().map(|s| s.to_string()).collect();
    assert_eq!(sel, vec!["unix:gid:1", "unix:uid:1000"]);
}

#[test]
fn bad_jwt_authorities_are_skipped_not_fatal() {
    let (signer, _) = signet_core::jwt::JwtSigner::generate("k1".into()).unwrap();
    let good = node::JwtAuthority {
        kid: "k1".into(),
        jwk: serde_json::to_string(&signer.jwk()).unwrap(),
        expires_at: 0,
    };
    let garbage = node::JwtAuthority {
        kid: "k2".into(),
        jwk: "{not json".into(),
        expires_at: 0,
    };
    let wrong_kid = node::JwtAuthority {
        kid: "k3".into(),
        ..good.clone()
    };
    let bad_curve = node::JwtAuthority {
        kid: "k4".into(),
        jwk: r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA","kid":"k4"}"#.into(),
        expires_at: 0,
    };
    let keys = jwt_authorities_from_proto(&[garbage, good, wrong_kid, bad_curve]);
    let keys: Vec<(String, _)> = keys.into_iter().map(|a| (a.kid, a.public_key)).collect();
    assert_eq!(keys, vec![("k1".to_string(), signer.public_key())]);
}

#[tokio::test(start_paused = true)]
async fn reconnects_back_off_with_jitter_to_a_30s_cap_and_start_over_after_a_message() {
    let mut b = reconnect_backoff();
    let steps: Vec<Duration> = (0..10).map(|_| b.next_delay_with(1.0)).collect();
    assert_eq!(steps[0], Duration::from_millis(500));
    assert_eq!(steps[1], Duration::from_secs(1));
    assert!(steps.windows(2).all(|w| w[1] >= w[0]), "never shrinks");
    assert_eq!(steps[9], Duration::from_secs(30), "capped");
    let jittered = b.next_delay();
    assert!(jittered >= Duration::from_secs(15) && jittered <= Duration::from_secs(30));
    let start = tokio::time::Instant::now();
    tokio::time::sleep(jittered).await;
    // Paused time moves in whole milliseconds.
    assert!(start.elapsed() >= jittered);
    assert!(start.elapsed() < jittered + Duration::from_millis(1));
    b.reset(); // what every sync message does
    assert_eq!(b.next_delay_with(1.0), Duration::from_millis(500));
}

#[test]
fn banned_and_evicted_are_told_apart() {
    let (status, message) = cut_off_report("agent is banned");
    assert_eq!(status, Status::Banned);
    assert!(message.contains("banned"), "{message}");
    let (status, message) = cut_off_report("agent spiffe://x/y not found");
    assert_eq!(status, Status::Evicted);
    assert!(message.contains("new join token"), "{message}");
}

#[test]
fn wire_revocations_are_normalized() {
    let list = [
        RevokedCredential {
            credential: Some(Credential::X509Serial("00:AB:01".into())),
            expires_at: 2_000_000_000,
            reason: "leak".into(),
        },
        RevokedCredential {
            credential: Some(Credential::JwtId("j1".into())),
            expires_at: 2_000_000_000,
            reason: String::new(),
        },
        RevokedCredential::default(),
    ];
    let r = revocations_from_proto(&list);
    let now = from_unix_seconds(1_900_000_000);
    assert!(r.is_serial_revoked("ab01", now));
    assert!(r.is_serial_revoked("00ab01", now));
    assert!(r.is_jti_revoked("j1", now));
    assert!(!r.is_jti_revoked("j1", from_unix_seconds(2_000_000_000)));
}

#[test]
fn an_entry_keeps_the_trust_domains_it_federates_with_and_drops_a_malformed_one() {
    let mut w = wire("spiffe://example.org/me", ("unix", "uid:1000"));
    w.federates_with = [
        "c.test",
        "b.test",
        "Not A Trust Domain!",
        "b.test",
        "example.org",
        "spiffe://d.test",
    ]
    .map(String::from)
    .into();
    let e = entry_from_proto(w).unwrap();
    let names: Vec<&str> = e.federates_with.iter().map(TrustDomain::as_str).collect();
    assert_eq!(
        names,
        ["b.test", "c.test", "d.test"],
        "sorted, unique, not its own"
    );
}

#[test]
fn federated_bundles_are_parsed_like_the_own_bundle_and_removals_by_name() {
    let (signer, _) = signet_core::jwt::JwtSigner::generate("b1".into()).unwrap();
    let key = |kid: &str, jwk: String| node::JwtAuthority {
        kid: kid.into(),
        jwk,
        expires_at: 2_000_000_000,
    };
    let update = update_from_proto(SyncResponse {
        revision: 3,
        federated_bundles: vec![
            node::Bundle {
                trust_domain: "b.test".into(),
                x509_authorities: vec![b"b CA".to_vec()],
                sequence: 2,
                jwt_authorities: vec![
                    key("b1", serde_json::to_string(&signer.jwk()).unwrap()),
                    key("b2", "{not json".into()),
                ],
            },
            node::Bundle {
                trust_domain: "Not A Trust Domain!".into(),
                ..Default::default()
            },
        ],
        removed_federated_bundles: vec!["c.test".into(), "Not Either!".into()],
        ..Default::default()
    });
    assert!(update.bundle.is_none(), "the own bundle is not among them");
    let [b] = update.federated_bundles.as_slice() else {
        panic!("one valid bundle: {:?}", update.federated_bundles);
    };
    assert_eq!(b.trust_domain.as_str(), "b.test");
    assert_eq!(b.x509_authorities, [b"b CA".to_vec()]);
    assert_eq!(b.sequence, 2);
    assert_eq!(b.jwt_keys(), [("b1".to_string(), signer.public_key())]);
    assert_eq!(b.jwt_authorities[0].expires_at, 2_000_000_000);
    let removed: Vec<&str> = update
        .removed_federated_bundles
        .iter()
        .map(TrustDomain::as_str)
        .collect();
    assert_eq!(removed, ["c.test"]);
}

#[test]
fn malformed_wire_entries_are_refused() {
    assert!(entry_from_proto(wire("spiffe://example.org", ("unix", "uid:1"))).is_err());
    assert!(entry_from_proto(wire("spiffe://example.org/me", ("", "uid:1"))).is_err());
}

#[tokio::test]
async fn sync_resumes_from_its_revision_on_the_next_server() {
    use crate::test_support::node_server::{Call, Group, Script, Seen};
    let snapshot_at_7 = Script {
        snapshot_revision: 7,
        ..Default::default()
    };
    let mut group = Group::start(&[("A", snapshot_at_7), ("B", snapshot_at_7)]);
    let (connector, _svid) = group.connector(group.addresses());
    let dir = tempfile::tempdir().unwrap();
    let (updates, mut updates_rx) = mpsc::channel(8);
    let (bundle, _) = watch::channel(Arc::new(vec![]));
    let (tainted_x509, _) = watch::channel(BTreeSet::new());
    let task = tokio::spawn(
        SyncTask {
            connector: Arc::new(connector),
            updates,
            bundle,
            tainted_x509,
            storage: crate::storage::Storage::open(dir.path()).unwrap(),
            health: Health::new(Duration::from_secs(30)),
            clock: Arc::new(signet_core::SystemClock),
            start_revision: 0,
        }
        .run(),
    );
    assert_eq!(
        group.next_call().await,
        Seen {
            server: "A",
            call: Call::Sync { since_revision: 0 }
        }
    );
    let snapshot = updates_rx.recv().await.unwrap();
    assert!(snapshot.snapshot);
    assert_eq!(snapshot.revision, 7);

    // Killed like `kill -9`; the agent resumes on B from revision 7, at
    // once and without asking for a snapshot again.
    let killed = tokio::time::Instant::now();
    group.kill("A");
    assert_eq!(
        group.next_call().await,
        Seen {
            server: "B",
            call: Call::Sync { since_revision: 7 }
        }
    );
    let failover = killed.elapsed();
    eprintln!("ha_failover_ms={}", failover.as_millis());
    assert!(failover < Duration::from_secs(2), "{failover:?}");
    let resumed = updates_rx.recv().await.unwrap();
    assert!(!resumed.snapshot);
    assert_eq!(resumed.revision, 7);
    task.abort();
}
