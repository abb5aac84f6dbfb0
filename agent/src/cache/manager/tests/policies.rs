//! The authorization policies the manager holds: a snapshot replaces the
//! set (even with none), deltas add, replace and delete one source, an
//! invalid source never replaces a valid one, a ban drops them all, and
//! each change is published at once. Paused time (`apply` is the
//! federation tests').

use super::*;

const READ: &str = "permit(principal, action == Signet::Action::\"read\", resource);";
const WRITE: &str = "permit(principal, action == Signet::Action::\"write\", resource);";

fn source(name: &str, text: &str) -> (String, String) {
    (name.to_owned(), text.to_owned())
}

impl Harness {
    fn policies(&self) -> Vec<(String, String)> {
        self.current()
            .policies
            .sources
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_replaces_the_policies_and_deltas_change_one_source() {
    let h = start(Duration::from_secs(3600));
    let own = x509_bundle(vec![h.ca.cert.clone()]);
    h.apply(SyncUpdate {
        snapshot: true,
        bundle: Some(own.clone()),
        policies: vec![source("a", READ), source("b", WRITE)],
        policies_complete: true,
        ..Default::default()
    })
    .await;
    assert_eq!(h.policies(), [source("a", READ), source("b", WRITE)]);
    assert_eq!(h.current().policies.engine.policies().len(), 2);

    h.apply(SyncUpdate {
        policies: vec![source("a", WRITE)],
        removed_policies: vec!["b".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(h.policies(), [source("a", WRITE)]);

    // Invalid: the held version stays.
    h.apply(SyncUpdate {
        policies: vec![source("a", "permit(principal")],
        ..Default::default()
    })
    .await;
    assert_eq!(h.policies(), [source("a", WRITE)]);

    // A snapshot with no policy at all clears them.
    h.apply(SyncUpdate {
        snapshot: true,
        bundle: Some(own),
        policies_complete: true,
        ..Default::default()
    })
    .await;
    assert!(h.policies().is_empty());
    assert!(h.current().policies.engine.policies().is_empty());

    h.apply(SyncUpdate {
        policies: vec![source("a", READ)],
        ..Default::default()
    })
    .await;
    h.apply(SyncUpdate {
        cut_off: Some("banned".into()),
        ..Default::default()
    })
    .await;
    assert!(h.policies().is_empty(), "a banned agent decides nothing");
}
