//! Federated bundles, relationships, and entries' federated trust domains.

use signet_core::bundle::Bundle;
use signet_core::{SpiffeId, TrustDomain};

use super::{entry, Opener};
use crate::datastore::{DataStoreError, EntryUpdate, FederatedBundleRecord, RelationshipRecord};
use crate::events::Change;
use crate::federation::{BundleSource, EndpointProfile};

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

/// A bundle of `name` with one made-up CA certificate (the store keeps the
/// document as given; parsing checks are the core's).
fn bundle(name: &str, sequence: u64) -> FederatedBundleRecord {
    let key = rcgen::KeyPair::generate().unwrap();
    let now = signet_core::Clock::now(&signet_core::SystemClock);
    let ca = signet_core::x509::ca_params(&td(name), now, now + std::time::Duration::from_secs(60))
        .unwrap()
        .self_signed(&key)
        .unwrap();
    FederatedBundleRecord {
        bundle: Bundle {
            trust_domain: td(name),
            x509_authorities: vec![ca.der().to_vec()],
            jwt_authorities: vec![],
            sequence,
        },
        source: BundleSource::Static,
        updated_at: 100,
    }
}

fn relationship(name: &str) -> RelationshipRecord {
    RelationshipRecord {
        trust_domain: td(name),
        bundle_endpoint_url: format!("https://{name}:8443"),
        profile: EndpointProfile::HttpsSpiffe {
            endpoint_id: SpiffeId::parse(&format!("spiffe://{name}/signet/server")).unwrap(),
        },
        created_at: 50,
        last_fetch_at: 0,
        last_error: String::new(),
    }
}

pub(crate) async fn federated_bundles_are_set_replaced_and_deleted_with_their_events(
    o: &dyn Opener,
) {
    let ds = o.open().await;
    let b1 = bundle("b.test", 1);
    assert_eq!(
        ds.set_federated_bundle(b1.clone(), false).await.unwrap(),
        b1
    );
    // The same document again: stored as it was, no event.
    let before = ds.current_revision().await.unwrap();
    ds.set_federated_bundle(b1.clone(), false).await.unwrap();
    assert_eq!(ds.current_revision().await.unwrap(), before);
    // A lower sequence is refused when only newer ones may come.
    let b0 = bundle("b.test", 0);
    assert!(matches!(
        ds.set_federated_bundle(b0.clone(), true).await,
        Err(DataStoreError::FailedPrecondition(m)) if m.contains("lower than the 1 held")
    ));
    assert_eq!(ds.federated_bundle(&td("b.test")).await.unwrap(), Some(b1));
    let c = bundle("c.test", 4);
    ds.set_federated_bundle(c.clone(), true).await.unwrap();
    let all: Vec<String> = ds
        .federated_bundles()
        .await
        .unwrap()
        .iter()
        .map(|r| r.bundle.trust_domain.to_string())
        .collect();
    assert_eq!(all, ["b.test", "c.test"]);
    assert_eq!(ds.delete_federated_bundle(&td("c.test")).await.unwrap(), c);
    assert!(matches!(
        ds.delete_federated_bundle(&td("c.test")).await,
        Err(DataStoreError::NotFound(_))
    ));
    let events: Vec<Change> = ds
        .events_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.change.clone())
        .collect();
    assert!(matches!(&events[..], [
        Change::FederatedBundleSet(one),
        Change::FederatedBundleSet(two),
        Change::FederatedBundleRemoved(gone),
    ] if one.bundle.trust_domain.as_str() == "b.test"
        && two == &c
        && gone.as_str() == "c.test"));
}

pub(crate) async fn relationships_keep_their_first_contact_bundle_and_record_fetches(
    o: &dyn Opener,
) {
    let ds = o.open().await;
    let first = bundle("b.test", 3);
    let created = ds
        .create_relationship(relationship("b.test"), Some(first.clone()))
        .await
        .unwrap();
    assert_eq!(created, relationship("b.test"));
    assert_eq!(
        ds.federated_bundle(&td("b.test")).await.unwrap(),
        Some(first)
    );
    assert!(matches!(
        ds.create_relationship(relationship("b.test"), None).await,
        Err(DataStoreError::AlreadyExists(_))
    ));
    // A bundle a relationship fetches is not deleted under it.
    assert!(matches!(
        ds.delete_federated_bundle(&td("b.test")).await,
        Err(DataStoreError::FailedPrecondition(_))
    ));
    ds.record_fetch(&td("b.test"), 77, "connection refused")
        .await
        .unwrap();
    let web = RelationshipRecord {
        bundle_endpoint_url: "https://b.example:443/bundle".into(),
        profile: EndpointProfile::HttpsWeb {
            ca_bundle: Some("-----BEGIN CERTIFICATE-----".into()),
        },
        ..relationship("b.test")
    };
    let updated = ds.update_relationship(web.clone()).await.unwrap();
    assert_eq!(updated.last_fetch_at, 77);
    assert_eq!(updated.last_error, "connection refused");
    let stored = ds.relationship(&td("b.test")).await.unwrap().unwrap();
    assert_eq!(stored.profile, web.profile);
    assert_eq!(stored.bundle_endpoint_url, web.bundle_endpoint_url);
    assert_eq!(ds.relationships().await.unwrap(), vec![stored.clone()]);
    assert_eq!(ds.delete_relationship(&td("b.test")).await.unwrap(), stored);
    assert!(ds.relationship(&td("b.test")).await.unwrap().is_none());
    // Its bundle stays until deleted by itself.
    assert!(ds.federated_bundle(&td("b.test")).await.unwrap().is_some());
    let federation_events = ds
        .events_after(0, 10)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.change == Change::FederationChanged)
        .count();
    assert_eq!(federation_events, 3);
}

pub(crate) async fn an_entrys_federated_trust_domains_change_under_a_new_revision(o: &dyn Opener) {
    let ds = o.open().await;
    let created = ds
        .create_entry(
            signet_core::RegistrationEntry {
                federates_with: vec![td("b.test")],
                ..entry(1, "spiffe://example.org/agent", &["unix:uid:1"])
            },
            5,
        )
        .await
        .unwrap();
    assert_eq!(created.entry.federates_with, vec![td("b.test")]);
    let updated = ds
        .update_entry(
            "entry-1",
            EntryUpdate {
                federates_with: Some(vec![td("c.test"), td("d.test")]),
                downstream: Some(true),
            },
        )
        .await
        .unwrap();
    assert!(updated.entry.revision > created.entry.revision);
    assert_eq!(
        updated.entry.federates_with,
        vec![td("c.test"), td("d.test")]
    );
    assert!(updated.entry.downstream);
    // A field not named stays as it is.
    let kept = ds
        .update_entry(
            "entry-1",
            EntryUpdate {
                federates_with: None,
                downstream: Some(false),
            },
        )
        .await
        .unwrap();
    assert_eq!(kept.entry.federates_with, updated.entry.federates_with);
    assert!(!kept.entry.downstream);
    let updated = kept;
    assert_eq!(
        ds.get_entry("entry-1").await.unwrap(),
        Some(updated.clone())
    );
    let last = ds.events_after(created.entry.revision, 5).await.unwrap();
    assert_eq!(last.len(), 2, "one event per update");
    assert_eq!(last[1].change, Change::EntryUpdated(updated));
    assert!(matches!(
        ds.update_entry("nope", EntryUpdate::default()).await,
        Err(DataStoreError::NotFound(_))
    ));
}
