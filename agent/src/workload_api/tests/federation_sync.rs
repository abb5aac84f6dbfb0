//! Federated bundles from the server's Sync stream to open Workload API
//! streams: a test Node server feeds the real sync task, cache manager and
//! Workload API, as a running agent is fed.

use std::collections::HashMap;

use signet_core::bundle::Bundle;
use signet_proto::node::{self, SyncResponse};
use signet_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, ValidateJwtsvidRequest, X509BundlesRequest,
    X509BundlesResponse,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::federation::{jwks_kids, Peer};
use super::*;
use crate::cache::CacheManager;
use crate::health::Health;
use crate::storage::Storage;
use crate::sync::SyncTask;
use crate::test_support::node_server::{Group, PkiSigner, Script};

/// A test server, and the agent's sync, cache and Workload API after it.
struct Synced {
    group: Group,
    feed: mpsc::UnboundedSender<SyncResponse>,
    cache: watch::Receiver<Arc<Snapshot>>,
    served: Served,
    tasks: Vec<JoinHandle<()>>,
    _data: tempfile::TempDir,
}

impl Drop for Synced {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn start_synced() -> Synced {
    let script = Script {
        snapshot_revision: 1,
        ..Default::default()
    };
    let group = Group::start(&[("A", script)]);
    let (connector, _svid) = group.connector(group.addresses());
    let (updates, updates_rx) = mpsc::channel(8);
    let (manager, cache) = CacheManager::new(
        td(),
        Arc::new(PkiSigner(group.pki.clone())),
        Arc::new(SystemClock),
        || 0.0,
        updates_rx,
    );
    let data = tempfile::tempdir().unwrap();
    let sync = SyncTask {
        connector: Arc::new(connector),
        updates,
        bundle: watch::channel(Arc::new(vec![group.pki.ca.clone()])).0,
        tainted_x509: watch::channel(Default::default()).0,
        storage: Storage::open(data.path()).unwrap(),
        health: Health::new(Duration::from_secs(30)),
        clock: Arc::new(SystemClock),
        start_revision: 0,
    };
    let tasks = vec![tokio::spawn(manager.run()), tokio::spawn(sync.run())];
    let (signer, _) = JwtSigner::generate("unused".into()).unwrap();
    let minter = FakeMinter::new(
        Arc::new(signer),
        Arc::new(SystemClock),
        Duration::from_secs(300),
    );
    let served = serve_cache(cache.clone(), minter, ServeSettings::default()).await;
    Synced {
        feed: group.feed("A"),
        group,
        cache,
        served,
        tasks,
        _data: data,
    }
}

impl Synced {
    fn send(&self, message: SyncResponse) {
        self.feed.send(message).unwrap();
    }

    /// The published cache, once `ready` holds for it.
    async fn cache_where(&self, ready: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
        let mut cache = self.cache.clone();
        let found = tokio::time::timeout(Duration::from_secs(10), cache.wait_for(|s| ready(s)))
            .await
            .expect("the cache within 10 s")
            .unwrap()
            .clone();
        found
    }

    /// The caller's SVID issued and `td` held.
    async fn serving_with(&self, td: &str) -> Arc<Snapshot> {
        let td = TrustDomain::new(td).unwrap();
        self.cache_where(|s| {
            s.entries.get("w").is_some_and(|c| c.svid.is_some())
                && s.federated_bundles.contains_key(&td)
        })
        .await
    }

    async fn x509_bundles(&self) -> tonic::Streaming<X509BundlesResponse> {
        let mut client = self.served.client.clone();
        let request = crate::cli::client::request(X509BundlesRequest {});
        client
            .fetch_x509_bundles(request)
            .await
            .unwrap()
            .into_inner()
    }

    async fn jwt_bundles(&self) -> tonic::Streaming<JwtBundlesResponse> {
        let mut client = self.served.client.clone();
        let request = crate::cli::client::request(JwtBundlesRequest {});
        client
            .fetch_jwt_bundles(request)
            .await
            .unwrap()
            .into_inner()
    }
}

/// This process's entry "w", federating with `with`, as the server sends it.
fn wire_entry(with: &[&str]) -> node::Entry {
    let uid = nix::unistd::getuid().as_raw();
    node::Entry {
        id: "w".into(),
        spiffe_id: "spiffe://example.org/w".into(),
        parent_id: "spiffe://example.org/signet/agent/join_token/t".into(),
        selectors: vec![node::Selector {
            r#type: "unix".into(),
            value: format!("uid:{uid}"),
        }],
        revision: 1,
        federates_with: with.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

fn wire_bundle(b: &Bundle) -> node::Bundle {
    node::Bundle {
        trust_domain: b.trust_domain.to_string(),
        x509_authorities: b.x509_authorities.clone(),
        sequence: b.sequence,
        jwt_authorities: b
            .jwt_authorities
            .iter()
            .map(|a| node::JwtAuthority {
                kid: a.kid.clone(),
                jwk: serde_json::to_string(&a.jwk).unwrap(),
                expires_at: a.expires_at,
            })
            .collect(),
    }
}

fn delta(revision: u64) -> SyncResponse {
    SyncResponse {
        revision,
        ..Default::default()
    }
}

fn b_test(map: &HashMap<String, Vec<u8>>) -> Option<&Vec<u8>> {
    map.get("spiffe://b.test")
}

#[tokio::test]
async fn a_peer_rotation_reaches_an_open_x509_stream() {
    let agent = start_synced().await;
    let (b, b_next, c) = (
        Peer::new("b.test", "b1"),
        Peer::new("b.test", "b2"),
        Peer::new("c.test", "c1"),
    );
    agent.send(SyncResponse {
        entries: vec![wire_entry(&["b.test"])],
        federated_bundles: vec![wire_bundle(&b.bundle(&[], 1))],
        ..delta(2)
    });
    agent.serving_with("b.test").await;
    let mut x509 = fetch(&agent.served).await.unwrap();
    let mut bundles = agent.x509_bundles().await;
    let mut jwt = agent.jwt_bundles().await;
    let first = next(&mut x509).await.unwrap().unwrap();
    assert_eq!(b_test(&first.federated_bundles), Some(&b.cert));
    let msg = next(&mut bundles).await.unwrap().unwrap();
    assert_eq!(b_test(&msg.bundles), Some(&b.cert));
    let msg = next(&mut jwt).await.unwrap().unwrap();
    assert_eq!(jwks_kids(&msg.bundles["spiffe://b.test"]), ["b1"]);

    // b.test prepares a new CA and JWT key: every open stream has them at once.
    agent.send(SyncResponse {
        federated_bundles: vec![wire_bundle(&b.bundle(&[&b_next], 2))],
        ..delta(3)
    });
    let rotated = [b.cert.clone(), b_next.cert.clone()].concat();
    let msg = next(&mut x509).await.unwrap().unwrap();
    assert_eq!(b_test(&msg.federated_bundles), Some(&rotated));
    assert_eq!(msg.svids, first.svids, "the SVID itself is unchanged");
    let msg = next(&mut bundles).await.unwrap().unwrap();
    assert_eq!(b_test(&msg.bundles), Some(&rotated));
    let msg = next(&mut jwt).await.unwrap().unwrap();
    assert_eq!(jwks_kids(&msg.bundles["spiffe://b.test"]), ["b1", "b2"]);

    // c.test is none of the caller's business: nothing is re-sent.
    agent.send(SyncResponse {
        federated_bundles: vec![wire_bundle(&c.bundle(&[], 1))],
        ..delta(4)
    });
    let c_td = TrustDomain::new("c.test").unwrap();
    agent
        .cache_where(|s| s.federated_bundles.contains_key(&c_td))
        .await;
    nothing_within(&mut x509, 200).await;
    nothing_within(&mut bundles, 50).await;
    nothing_within(&mut jwt, 50).await;

    // b.test's bundle is gone: so is it from every stream.
    agent.send(SyncResponse {
        removed_federated_bundles: vec!["b.test".into()],
        ..delta(5)
    });
    let msg = next(&mut x509).await.unwrap().unwrap();
    assert!(msg.federated_bundles.is_empty(), "{msg:?}");
    let msg = next(&mut bundles).await.unwrap().unwrap();
    assert_eq!(
        msg.bundles.keys().collect::<Vec<_>>(),
        ["spiffe://example.org"]
    );
    let msg = next(&mut jwt).await.unwrap().unwrap();
    assert!(b_test(&msg.bundles).is_none());
}

#[tokio::test]
async fn a_peer_bundle_never_replaces_the_own_one() {
    let agent = start_synced().await;
    let own = agent.group.pki.ca.clone();
    // A "federated" bundle claiming the agent's own trust domain, with a CA
    // and a JWT key of someone else's.
    let impostor = Peer::new("example.org", "impostor");
    let b = Peer::new("b.test", "b1");
    agent.send(SyncResponse {
        entries: vec![wire_entry(&["b.test", "example.org"])],
        federated_bundles: vec![
            wire_bundle(&impostor.bundle(&[], 99)),
            wire_bundle(&b.bundle(&[], 1)),
        ],
        ..delta(2)
    });
    let cache = agent.serving_with("b.test").await;
    assert_eq!(cache.bundle.as_deref(), Some(&vec![own.clone()]));
    assert!(!cache.federated_bundles.contains_key(&td()));
    assert_eq!(cache.entries["w"].entry.federates_with, vec![b.td.clone()]);

    let msg = next(&mut fetch(&agent.served).await.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.svids[0].bundle, own);
    assert_eq!(
        msg.federated_bundles.keys().collect::<Vec<_>>(),
        ["spiffe://b.test"]
    );
    let msg = next(&mut agent.x509_bundles().await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.bundles.get("spiffe://example.org"), Some(&own));

    // Nor does its JWT key vouch for an identity of the own trust domain.
    let refused = agent
        .served
        .client
        .clone()
        .validate_jwtsvid(crate::cli::client::request(ValidateJwtsvidRequest {
            audience: "svc".into(),
            svid: impostor.token(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "key id \"impostor\" not found in the bundle of trust domain \"example.org\""
    );

    // And "removing" it takes nothing away.
    agent.send(SyncResponse {
        removed_federated_bundles: vec!["example.org".into()],
        entries: vec![wire_entry(&[])],
        ..delta(3)
    });
    let cache = agent
        .cache_where(|s| {
            s.entries
                .get("w")
                .is_some_and(|c| c.entry.federates_with.is_empty())
        })
        .await;
    assert_eq!(cache.bundle.as_deref(), Some(&vec![own]));
}
