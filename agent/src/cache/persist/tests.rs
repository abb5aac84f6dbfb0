//! The cache file: its mode, round trips, coalesced writes, and files
//! older agents wrote.

use std::os::unix::fs::PermissionsExt;

use signet_core::bundle::Bundle;
use signet_core::clock::from_unix_seconds;
use signet_core::{Selector, SpiffeId};

use super::*;

#[tokio::test]
async fn cache_is_written_with_mode_0600_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let mut snapshot = Snapshot::empty(td.clone());
    snapshot.bundle = Some(Arc::new(vec![b"ca".to_vec()]));
    snapshot.revision = 42;
    snapshot.crls = Arc::new(vec![b"crl".to_vec()]);
    let mut revocations = Revocations::default();
    revocations
        .jwt_ids
        .insert("j".into(), from_unix_seconds(2_000_000_000));
    snapshot.revocations = Arc::new(revocations.clone());
    let (tx, rx) = watch::channel(Arc::new(Snapshot::empty(td.clone())));
    tokio::spawn(persist_loop(dir.path().to_owned(), rx));
    tx.send_replace(Arc::new(snapshot));
    let path = cache_path(dir.path());
    for _ in 0..100 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let back = load(dir.path(), &td).unwrap().unwrap();
    assert_eq!(back.revision, 42);
    assert_eq!(back.bundle, vec![b"ca".to_vec()]);
    assert_eq!(back.crls, vec![b"crl".to_vec()]);
    assert_eq!(back.revocations, revocations);
    let other = TrustDomain::new("other.org").unwrap();
    assert!(load(dir.path(), &other).unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_pause_or_the_longest_delay_ends_a_burst_of_changes() {
    let td = TrustDomain::new("example.org").unwrap();
    let (tx, mut rx) = watch::channel(Arc::new(Snapshot::empty(td.clone())));
    let start = tokio::time::Instant::now();
    settle(&mut rx).await;
    assert_eq!(start.elapsed(), COALESCE, "no change: one pause");

    // Changes every 100 ms never pause: written at MAX_DELAY.
    let sender = tokio::spawn({
        let td = td.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tx.send_replace(Arc::new(Snapshot::empty(td.clone())));
            }
        }
    });
    let start = tokio::time::Instant::now();
    settle(&mut rx).await;
    assert_eq!(start.elapsed(), MAX_DELAY);
    sender.abort();
}

#[test]
fn entries_round_trip_and_an_unchanged_document_is_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let mut snapshot = Snapshot::empty(td.clone());
    snapshot.bundle = Some(Arc::new(vec![b"ca".to_vec()]));
    let entry = RegistrationEntry {
        id: "e1".into(),
        spiffe_id: SpiffeId::parse("spiffe://example.org/web").unwrap(),
        parent_id: SpiffeId::parse("spiffe://example.org/agent").unwrap(),
        selectors: vec![Selector::parse("unix:uid:1000").unwrap()],
        x509_svid_ttl: Some(Duration::from_secs(60)),
        jwt_svid_ttl: None,
        dns_names: vec!["web.local".into()],
        hint: "h".into(),
        admin: false,
        downstream: false,
        revision: 3,
        federates_with: vec![TrustDomain::new("b.test").unwrap()],
    };
    snapshot.entries.insert(
        "e1".into(),
        crate::cache::state::CachedEntry {
            entry: Arc::new(entry.clone()),
            svid: None,
        },
    );
    let path = cache_path(dir.path());
    let digest = write_if_changed(&path, &snapshot, None).unwrap();
    let back = load(dir.path(), &td).unwrap().unwrap();
    assert_eq!(back.entries.len(), 1);
    assert_eq!(back.entries[0].0, entry);

    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        write_if_changed(&path, &snapshot, Some(digest)).unwrap(),
        digest
    );
    assert!(!path.exists(), "same document: no write");
}

fn federating_entry() -> RegistrationEntry {
    let mut entry = crate::test_support::entry(
        "e1",
        "spiffe://example.org/web",
        "spiffe://example.org/agent",
        &["unix:uid:1000"],
    );
    entry.federates_with = vec![TrustDomain::new("b.test").unwrap()];
    entry
}

/// A ready snapshot holding `entry` and, unless `None`, b.test's bundle.
fn snapshot_with(entry: RegistrationEntry, peer: Option<Bundle>) -> Snapshot {
    let mut snapshot = Snapshot::empty(TrustDomain::new("example.org").unwrap());
    snapshot.bundle = Some(Arc::new(vec![b"ca".to_vec()]));
    snapshot.entries.insert(
        entry.id.as_str().into(),
        crate::cache::state::CachedEntry {
            entry: Arc::new(entry),
            svid: None,
        },
    );
    if let Some(peer) = peer {
        snapshot.federated_bundles = Arc::new([(peer.trust_domain.clone(), Arc::new(peer))].into());
    }
    snapshot
}

#[test]
fn federated_bundles_round_trip_with_their_jwt_keys() {
    let (signer, _) = signet_core::jwt::JwtSigner::generate("b1".into()).unwrap();
    let peer = Bundle {
        trust_domain: TrustDomain::new("b.test").unwrap(),
        x509_authorities: vec![b"b CA".to_vec(), b"b next CA".to_vec()],
        jwt_authorities: vec![signet_core::bundle::JwtAuthority {
            kid: "b1".into(),
            jwk: signer.jwk(),
            public_key: signer.public_key(),
            expires_at: 2_000_000_000,
        }],
        sequence: 7,
    };
    let doc = encode(&snapshot_with(federating_entry(), Some(peer.clone()))).unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let back = decode(&doc, &td).unwrap().unwrap();
    assert_eq!(back.federated_bundles, [peer]);
    assert_eq!(back.entries[0].0, federating_entry());
}

#[test]
fn a_cache_file_from_before_federation_still_loads() {
    let doc = encode(&snapshot_with(federating_entry(), None)).unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    let file = json.as_object_mut().unwrap();
    assert!(file.remove("federated_bundles").is_some());
    for entry in file["entries"].as_array_mut().unwrap() {
        assert!(entry
            .as_object_mut()
            .unwrap()
            .remove("federates_with")
            .is_some());
    }
    let old = serde_json::to_vec(&json).unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let back = decode(&old, &td).unwrap().unwrap();
    assert!(back.federated_bundles.is_empty());
    assert_eq!(back.entries.len(), 1);
    assert!(back.entries[0].0.federates_with.is_empty());
    assert_eq!(back.bundle, [b"ca".to_vec()]);
}

#[test]
fn policies_round_trip_and_older_files_load_without_them() {
    let read = "permit(principal, action == Signet::Action::\"read\", resource);";
    let mut snapshot = snapshot_with(federating_entry(), None);
    let sources = [("orders".to_owned(), read.to_owned())].into();
    snapshot.policies = Arc::new(crate::cache::HeldPolicies::default().replaced_by(sources));
    let doc = encode(&snapshot).unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let back = decode(&doc, &td).unwrap().unwrap();
    assert_eq!(back.policies, [("orders".to_owned(), read.to_owned())]);

    let mut json: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert!(json.as_object_mut().unwrap().remove("policies").is_some());
    let old = serde_json::to_vec(&json).unwrap();
    assert!(decode(&old, &td).unwrap().unwrap().policies.is_empty());
}
