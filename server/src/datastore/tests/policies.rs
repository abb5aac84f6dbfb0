//! Authorization policies: created once per name, replaced, deleted, each
//! change an event; read back by another handle too.

use super::Opener;
use crate::datastore::{DataStoreError, PolicyRecord};
use crate::events::Change;

fn p(name: &str, text: &str, at: i64) -> PolicyRecord {
    PolicyRecord {
        name: name.into(),
        text: text.into(),
        created_at: at,
        updated_at: at,
    }
}

pub(crate) async fn policies_are_created_replaced_and_deleted_with_their_events(o: &dyn Opener) {
    let ds = o.open().await;
    let read = p("read", "permit(principal, action, resource);", 100);
    ds.create_policy(read.clone()).await.unwrap();
    ds.create_policy(p("deny", "forbid(principal, action, resource);", 110))
        .await
        .unwrap();
    assert!(matches!(
        ds.create_policy(p("read", "x", 120)).await,
        Err(DataStoreError::AlreadyExists(_))
    ));
    let replaced = ds
        .update_policy(p(
            "read",
            "permit(principal, action, resource) when { false };",
            130,
        ))
        .await
        .unwrap();
    assert_eq!((replaced.created_at, replaced.updated_at), (100, 130));
    assert!(matches!(
        ds.update_policy(p("nope", "x", 1)).await,
        Err(DataStoreError::NotFound(_))
    ));
    let other = o.open().await;
    let names: Vec<String> = other
        .policies()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["deny", "read"]);
    assert_eq!(other.policy("read").await.unwrap(), Some(replaced.clone()));
    assert_eq!(other.delete_policy("deny").await.unwrap().name, "deny");
    assert!(matches!(
        other.delete_policy("deny").await,
        Err(DataStoreError::NotFound(_))
    ));
    assert_eq!(other.policy("deny").await.unwrap(), None);
    let events: Vec<Change> = ds
        .events_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.change.clone())
        .collect();
    assert!(
        matches!(&events[..], [
            Change::PolicySet(a),
            Change::PolicySet(b),
            Change::PolicySet(c),
            Change::PolicyRemoved(gone),
        ] if a == &read && b.name == "deny" && c == &replaced && gone == "deny"),
        "{events:?}"
    );
}
