//! Every server's authorities, the bundle's sequence and their events.

use super::servers::server;
use super::Opener;
use crate::ca::{AuthorityKind, AuthorityState};
use crate::datastore::{AuthorityRecord, DataStoreError};
use crate::events::Change;

fn authority(kind: AuthorityKind, id: &str, state: AuthorityState) -> AuthorityRecord {
    AuthorityRecord {
        kind,
        id: id.into(),
        server_id: String::new(),
        state,
        tainted: false,
        not_before: 1,
        not_after: 2,
        certificate: (kind == AuthorityKind::X509).then(|| format!("cert-{id}").into_bytes()),
        public_key: (kind == AuthorityKind::Jwt).then(|| format!("{{\"kid\":\"{id}\"}}")),
        upstream_root: None,
        upstream_chain: None,
    }
}

fn x509(id: &str, state: AuthorityState) -> AuthorityRecord {
    authority(AuthorityKind::X509, id, state)
}

fn owned(server: &str, mut list: Vec<AuthorityRecord>) -> Vec<AuthorityRecord> {
    for a in &mut list {
        a.server_id = server.into();
    }
    list
}

fn changes(events: &[std::sync::Arc<crate::events::Event>]) -> Vec<Change> {
    events.iter().map(|e| e.change.clone()).collect()
}

pub(crate) async fn each_servers_authorities_are_saved_whole_and_the_bundle_is_their_union(
    o: &dyn Opener,
) {
    let ds = o.open().await;
    assert!(ds.load_authorities().await.unwrap().authorities.is_empty());
    let a = vec![
        x509("aa", AuthorityState::Active),
        authority(AuthorityKind::Jwt, "ka", AuthorityState::Active),
    ];
    let first = ds.save_authorities("s1", a.clone(), vec![]).await.unwrap();
    assert_eq!(first.sequence, 1);
    assert_eq!(first.authorities, owned("s1", a.clone()));
    assert_eq!(
        changes(&ds.events_after(0, 10).await.unwrap()),
        [Change::BundleChanged]
    );
    // Another server's authorities join the bundle: a new sequence.
    let b = vec![x509("bb", AuthorityState::Active)];
    let second = ds.save_authorities("s2", b.clone(), vec![]).await.unwrap();
    assert_eq!(second.sequence, 2);
    let mut union = owned("s1", a.clone());
    union.extend(owned("s2", b.clone()));
    assert_eq!(second.authorities, union);
    // A state change (same bundle): no new sequence; the changes asked for
    // are written.
    let mut a2 = a.clone();
    a2[0].state = AuthorityState::Old;
    a2.insert(0, x509("cc", AuthorityState::Prepared));
    let third = ds
        .save_authorities("s1", a2.clone(), vec![Change::TaintedChanged])
        .await
        .unwrap();
    assert_eq!(third.sequence, 3, "cc is new to the bundle");
    let state_only = {
        let mut a3 = a2.clone();
        a3[0].state = AuthorityState::Active;
        a3
    };
    let fourth = ds
        .save_authorities("s1", state_only.clone(), vec![])
        .await
        .unwrap();
    assert_eq!(fourth.sequence, 3, "an activation changes no bundle");
    assert_eq!(fourth.revision, ds.current_revision().await.unwrap());
    let stored = ds.load_authorities().await.unwrap();
    assert_eq!(stored.sequence, 3);
    assert_eq!(stored.revision, fourth.revision);
    let mut expected = owned("s1", state_only);
    expected.extend(owned("s2", b));
    assert_eq!(
        stored.authorities, expected,
        "each server's in the order saved"
    );
    // A server with none left leaves only the others'.
    let gone = ds.save_authorities("s2", vec![], vec![]).await.unwrap();
    assert_eq!(gone.sequence, 4);
    assert!(gone.authorities.iter().all(|a| a.server_id == "s1"));
}

pub(crate) async fn a_taint_or_revocation_made_elsewhere_survives_the_owners_next_save(
    o: &dyn Opener,
) {
    let (owner, other) = (o.open().await, o.open().await);
    let mine = vec![
        x509("active", AuthorityState::Active),
        x509("old", AuthorityState::Old),
        authority(AuthorityKind::Jwt, "kold", AuthorityState::Old),
    ];
    owner
        .save_authorities("s1", mine.clone(), vec![])
        .await
        .unwrap();
    let before = other.current_revision().await.unwrap();
    let tainted = other
        .taint_authority(AuthorityKind::X509, "old")
        .await
        .unwrap();
    assert!(tainted.tainted);
    assert_eq!(tainted.server_id, "s1");
    // Tainting again changes nothing.
    other
        .taint_authority(AuthorityKind::X509, "old")
        .await
        .unwrap();
    other
        .taint_authority(AuthorityKind::Jwt, "kold")
        .await
        .unwrap();
    other
        .revoke_authority(AuthorityKind::Jwt, "kold")
        .await
        .unwrap();
    assert_eq!(
        changes(&other.events_after(before, 10).await.unwrap()),
        [
            Change::TaintedChanged,
            Change::TaintedChanged,
            Change::BundleChanged,
            Change::TaintedChanged
        ]
    );
    // The owner saves what it held in memory (untainted, kold still there).
    let saved = owner.save_authorities("s1", mine, vec![]).await.unwrap();
    let ids: Vec<(&str, bool)> = saved
        .authorities
        .iter()
        .map(|a| (a.id.as_str(), a.tainted))
        .collect();
    assert_eq!(ids, [("active", false), ("old", true)]);
    assert_eq!(
        owner.load_authorities().await.unwrap().authorities,
        saved.authorities
    );
}

pub(crate) async fn active_authorities_cannot_be_tainted_or_revoked(o: &dyn Opener) {
    let ds = o.open().await;
    ds.save_authorities(
        "s1",
        vec![
            x509("act", AuthorityState::Active),
            x509("old", AuthorityState::Old),
        ],
        vec![],
    )
    .await
    .unwrap();
    assert!(matches!(
        ds.taint_authority(AuthorityKind::X509, "act").await,
        Err(DataStoreError::FailedPrecondition(m)) if m.contains("is active")
    ));
    assert!(matches!(
        ds.revoke_authority(AuthorityKind::X509, "old").await,
        Err(DataStoreError::FailedPrecondition(m)) if m.contains("taint it first")
    ));
    assert!(matches!(
        ds.taint_authority(AuthorityKind::Jwt, "old").await,
        Err(DataStoreError::NotFound(_))
    ));
}

pub(crate) async fn a_removed_servers_authorities_go_once_expired(o: &dyn Opener) {
    let ds = o.open().await;
    ds.register_server(server("gone", 1)).await.unwrap();
    ds.register_server(server("here", 1)).await.unwrap();
    let ending = |id: &str, not_after| AuthorityRecord {
        not_after,
        ..x509(id, AuthorityState::Active)
    };
    ds.save_authorities("gone", vec![ending("g1", 100)], vec![])
        .await
        .unwrap();
    ds.save_authorities("here", vec![ending("h1", 50)], vec![])
        .await
        .unwrap();
    let crl = |authority: &str, server: &str| crate::datastore::StoredCrl {
        authority_id: authority.into(),
        server_id: server.into(),
        der: vec![0x30, 0x00],
    };
    ds.save_crls("gone", vec![crl("g1", "gone")]).await.unwrap();
    ds.save_crls("here", vec![crl("h1", "here")]).await.unwrap();
    // Still registered: nothing goes, expired or not.
    assert_eq!(ds.prune_authorities(1000).await.unwrap(), 0);
    ds.remove_server("gone").await.unwrap();
    // Removed, but what it signed may still be in use until it expires.
    assert_eq!(ds.prune_authorities(99).await.unwrap(), 0);
    let sequence = ds.load_authorities().await.unwrap().sequence;
    assert_eq!(ds.prune_authorities(100).await.unwrap(), 1);
    let left = ds.load_authorities().await.unwrap();
    assert_eq!(
        left.authorities
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
        ["h1"],
        "a live server's own expired authority is its own to drop"
    );
    assert_eq!(left.sequence, sequence + 1);
    // The removed server's CRL went with its CA; the live one's stays.
    assert_eq!(ds.crls().await.unwrap(), vec![crl("h1", "here")]);
}
