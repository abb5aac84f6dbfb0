//! The federated bundles the manager holds: a sync snapshot replaces them
//! all, deltas change one trust domain at a time, the own trust domain is
//! never among them, and they outlive a restart. Paused time.

use std::collections::BTreeMap;

use signet_core::bundle::Bundle;

use super::*;
use crate::cache::persist;

/// A bundle of `td` whose one (stand-in) authority names its sequence.
fn peer(td: &str, sequence: u64) -> Bundle {
    Bundle {
        trust_domain: TrustDomain::new(td).unwrap(),
        x509_authorities: vec![format!("{td} CA #{sequence}").into_bytes()],
        jwt_authorities: vec![],
        sequence,
    }
}

fn removed(td: &str) -> TrustDomain {
    TrustDomain::new(td).unwrap()
}

impl Harness {
    pub(super) async fn apply(&self, update: SyncUpdate) {
        self.updates.send(update).await.unwrap();
        settle().await;
    }

    /// Trust domain → sequence of each held federated bundle.
    fn federated(&self) -> BTreeMap<String, u64> {
        self.current()
            .federated_bundles
            .iter()
            .map(|(td, b)| (td.to_string(), b.sequence))
            .collect()
    }
}

fn held(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(td, s)| (td.to_string(), *s)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_sync_snapshot_replaces_every_federated_bundle_and_deltas_change_one_at_a_time() {
    let h = start(Duration::from_secs(3600));
    let own = x509_bundle(vec![h.ca.cert.clone()]);
    h.apply(SyncUpdate {
        snapshot: true,
        bundle: Some(own.clone()),
        federated_bundles: vec![peer("b.test", 1), peer("c.test", 1)],
        ..Default::default()
    })
    .await;
    assert_eq!(h.federated(), held(&[("b.test", 1), ("c.test", 1)]));

    h.apply(SyncUpdate {
        federated_bundles: vec![peer("b.test", 2)],
        removed_federated_bundles: vec![removed("c.test")],
        ..Default::default()
    })
    .await;
    assert_eq!(h.federated(), held(&[("b.test", 2)]), "replaced, removed");
    h.apply(SyncUpdate {
        federated_bundles: vec![peer("d.test", 1)],
        ..Default::default()
    })
    .await;
    assert_eq!(
        h.federated(),
        held(&[("b.test", 2), ("d.test", 1)]),
        "added"
    );

    // A snapshot sent in parts: its first part's bundles are added at once,
    // and what it lacks goes only with the whole snapshot.
    h.apply(SyncUpdate {
        preview: true,
        federated_bundles: vec![peer("c.test", 3)],
        ..Default::default()
    })
    .await;
    assert_eq!(
        h.federated(),
        held(&[("b.test", 2), ("c.test", 3), ("d.test", 1)])
    );
    h.apply(SyncUpdate {
        snapshot: true,
        bundle: Some(own.clone()),
        federated_bundles: vec![peer("c.test", 3)],
        ..Default::default()
    })
    .await;
    assert_eq!(h.federated(), held(&[("c.test", 3)]));

    h.apply(SyncUpdate {
        snapshot: true,
        bundle: Some(own),
        ..Default::default()
    })
    .await;
    assert_eq!(h.federated(), held(&[]), "an empty set in a snapshot");
}

#[tokio::test(start_paused = true)]
async fn a_bundle_for_the_own_trust_domain_is_never_held_as_federated() {
    let h = start(Duration::from_secs(3600));
    let mut impostor = x509_bundle(vec![b"someone else's CA".to_vec()]);
    impostor.sequence = 99;
    h.apply(SyncUpdate {
        snapshot: true,
        bundle: Some(x509_bundle(vec![h.ca.cert.clone()])),
        federated_bundles: vec![impostor.clone(), peer("b.test", 1)],
        ..Default::default()
    })
    .await;
    h.apply(SyncUpdate {
        federated_bundles: vec![impostor],
        ..Default::default()
    })
    .await;
    assert_eq!(h.federated(), held(&[("b.test", 1)]));
    assert_eq!(
        h.current().bundle.as_deref(),
        Some(&vec![h.ca.cert.clone()])
    );
}

#[tokio::test(start_paused = true)]
async fn federated_bundles_are_restored_from_the_cache_file_and_dropped_on_a_ban() {
    let first = start(Duration::from_secs(3600));
    first
        .apply(SyncUpdate {
            snapshot: true,
            bundle: Some(x509_bundle(vec![first.ca.cert.clone()])),
            federated_bundles: vec![peer("b.test", 4)],
            ..Default::default()
        })
        .await;
    let doc = persist::encode(&first.current()).unwrap();
    let restored = persist::decode(&doc, &td()).unwrap().unwrap();
    let h = start_with(
        Duration::from_secs(3600),
        || 0.0,
        Some((restored, first.origin)),
    );
    assert_eq!(
        h.federated(),
        held(&[("b.test", 4)]),
        "served before any sync"
    );
    let bundle = &h.current().federated_bundles[&removed("b.test")];
    assert_eq!(bundle.x509_authorities, [b"b.test CA #4".to_vec()]);

    h.apply(SyncUpdate {
        cut_off: Some("agent is banned".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(h.federated(), held(&[]));
}
