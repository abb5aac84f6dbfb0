//! The manager under jitter, taint, revocation, a ban, and a restart from
//! disk, all on paused time.

use super::*;
use crate::cache::persist;

impl Harness {
    async fn send(&self, update: SyncUpdate) {
        self.updates.send(update).await.unwrap();
        settle().await;
    }

    fn svid(&self, id: &str) -> Arc<Svid> {
        self.current().entries[id].svid.clone().unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn nothing_is_renewed_before_half_life_minus_jitter_and_all_by_half_life_plus_jitter() {
    // 100 s SVIDs: half-life 50 s, jitter ±5 s.
    for jitter in [
        (|| -1.0) as fn() -> f64,
        || 1.0,
        signet_core::rotation::random_jitter,
    ] {
        let h = start_with(Duration::from_secs(100), jitter, None);
        h.snapshot(vec![entry("a", "/a"), entry("b", "/b")]).await;
        assert_eq!(h.calls(), 1);
        tokio::time::advance(Duration::from_millis(44_999)).await;
        settle().await;
        assert_eq!(h.calls(), 1, "nothing before half-life - jitter");
        tokio::time::advance(Duration::from_millis(10_001)).await;
        settle().await;
        let renewed = h.ca.batch_sizes.lock().unwrap()[1..].iter().sum::<usize>();
        assert_eq!(renewed, 2, "both renewed by half-life + jitter");
    }
}

#[tokio::test(start_paused = true)]
async fn taint_reissues_only_the_svids_of_the_tainted_authority_at_once() {
    let h = start(Duration::from_secs(1000));
    // The fake server names either CA of the bundle as the signer.
    let old = crate::cache::authority_id(&h.ca.cert);
    let new = crate::cache::authority_id(&h.ca.next_cert);
    *h.ca.authority.lock().unwrap() = old.clone();
    h.snapshot(vec![entry("a", "/a")]).await;
    *h.ca.authority.lock().unwrap() = new.clone();
    h.send(SyncUpdate {
        entries: vec![entry("b", "/b")],
        ..Default::default()
    })
    .await;
    let (a, b) = (h.svid("a"), h.svid("b"));
    assert_eq!(
        (a.x509.authority_id.as_ref(), b.x509.authority_id.as_ref()),
        (old.as_str(), new.as_str())
    );
    let calls = h.calls();

    h.send(SyncUpdate {
        tainted: Some(Tainted {
            x509: [old.clone()].into(),
            jwt_kids: Default::default(),
        }),
        ..Default::default()
    })
    .await;
    assert_eq!(h.calls(), calls + 1, "re-issued at once, no time passed");
    assert_eq!(h.ca.batch_sizes.lock().unwrap().last(), Some(&1));
    let (a2, b2) = (h.svid("a"), h.svid("b"));
    assert_ne!(
        a2.x509.serial_hex, a.x509.serial_hex,
        "tainted SVID replaced"
    );
    assert_eq!(&*a2.x509.authority_id, new.as_str());
    assert_eq!(
        b2.x509.serial_hex, b.x509.serial_hex,
        "untainted SVID untouched"
    );
    assert_eq!(h.current().tainted.x509.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn authority_is_found_in_the_bundle_when_the_server_does_not_name_it() {
    let h = start(Duration::from_secs(100));
    h.snapshot(vec![entry("a", "/a")]).await;
    assert_eq!(
        &*h.svid("a").x509.authority_id,
        crate::cache::authority_id(&h.ca.cert).as_str()
    );
}

#[tokio::test(start_paused = true)]
async fn an_authority_the_bundle_lacks_is_proven_from_the_chain() {
    let h = start(Duration::from_secs(100));
    *h.ca.authority.lock().unwrap() = "not-in-the-bundle".into();
    h.snapshot(vec![entry("a", "/a")]).await;
    assert_eq!(
        &*h.svid("a").x509.authority_id,
        crate::cache::authority_id(&h.ca.cert).as_str(),
        "the chain validated against the bundle names the real signer"
    );
}

#[tokio::test(start_paused = true)]
async fn revoked_serial_of_a_held_svid_is_reissued_at_once() {
    let h = start(Duration::from_secs(1000));
    h.snapshot(vec![entry("a", "/a"), entry("b", "/b")]).await;
    let (a, b) = (h.svid("a"), h.svid("b"));
    let mut revocations = Revocations::default();
    revocations.x509_serials.insert(
        a.x509.serial_hex.trim_start_matches('0').to_owned(),
        a.x509.not_after,
    );
    revocations.jwt_ids.insert("jti-1".into(), a.x509.not_after);
    h.send(SyncUpdate {
        revocations,
        crls: Some(vec![b"crl".to_vec()]),
        ..Default::default()
    })
    .await;
    assert_ne!(
        h.svid("a").x509.serial_hex,
        a.x509.serial_hex,
        "revoked SVID replaced"
    );
    assert_eq!(h.svid("b").x509.serial_hex, b.x509.serial_hex);
    let snap = h.current();
    assert_eq!(*snap.crls, vec![b"crl".to_vec()]);
    assert!(snap.revocations.is_jti_revoked("jti-1", h.ca.clock.now()));

    // Additions accumulate; a snapshot replaces the list.
    h.snapshot(vec![entry("a", "/a"), entry("b", "/b")]).await;
    assert!(h.current().revocations.jwt_ids.is_empty());
}

#[tokio::test(start_paused = true)]
async fn ban_drops_every_svid_at_once_and_nothing_is_issued_again() {
    let h = start(Duration::from_secs(100));
    h.snapshot(vec![entry("a", "/a"), entry("b", "/b")]).await;
    let calls = h.calls();
    h.send(SyncUpdate {
        cut_off: Some("agent is banned".into()),
        ..Default::default()
    })
    .await;
    assert!(h.current().entries.is_empty(), "every SVID dropped");
    // Later updates (or timers) issue nothing.
    h.snapshot(vec![entry("c", "/c")]).await;
    tokio::time::advance(Duration::from_secs(300)).await;
    settle().await;
    assert!(h.current().entries.is_empty());
    assert_eq!(h.calls(), calls);
}

#[tokio::test(start_paused = true)]
async fn restart_from_disk_serves_cached_svids_without_any_server_call() {
    let first = start(Duration::from_secs(100));
    first
        .snapshot(vec![entry("a", "/a"), entry("b", "/b")])
        .await;
    let before = first.current();
    let doc = persist::encode(&before).unwrap();

    // 10 s later a new process loads the file while the server is down.
    tokio::time::advance(Duration::from_secs(10)).await;
    let restored = persist::decode(&doc, &td()).unwrap().unwrap();
    let h = start_with(
        Duration::from_secs(100),
        || 0.0,
        Some((restored, first.origin)),
    );
    h.ca.fail.store(true, Ordering::SeqCst);
    let snap = h.current();
    assert!(snap.is_ready(), "published before anything ran");
    assert_eq!(h.calls(), 0, "no server call");
    for id in ["a", "b"] {
        let (was, is) = (before.entries[id].svid.clone().unwrap(), h.svid(id));
        assert_eq!(was.x509.chain, is.x509.chain);
        assert_eq!(was.key_pkcs8, is.key_pkcs8);
        assert_eq!(was.x509.authority_id, is.x509.authority_id);
    }
    assert_eq!(snap.bundle, before.bundle);
    assert_eq!(snap.revision, before.revision);
}

#[tokio::test(start_paused = true)]
async fn svids_that_expired_on_disk_are_not_served_after_a_restart() {
    let first = start(Duration::from_secs(20));
    first.snapshot(vec![entry("a", "/a")]).await;
    let doc = persist::encode(&first.current()).unwrap();
    tokio::time::advance(Duration::from_secs(21)).await;
    let restored = persist::decode(&doc, &td()).unwrap().unwrap();
    let h = start_with(
        Duration::from_secs(20),
        || 0.0,
        Some((restored, first.origin)),
    );
    h.ca.fail.store(true, Ordering::SeqCst);
    let snap = h.current();
    assert!(snap.entries.contains_key("a"), "the entry is kept");
    assert!(snap.entries["a"].svid.is_none(), "its expired SVID is not");
}
