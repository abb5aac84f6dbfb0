//! What every backend must do alike, written once and run on each
//! (`backend_tests!` in `sqlite/tests.rs` and `postgres/tests.rs`): the same
//! calls must give the same records, refusals, revisions and events.

mod agents;
mod audit;
mod authorities;
mod credentials;
mod entries;
mod federation;
mod policies;
mod servers;
mod sightings;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use signet_core::{RegistrationEntry, Selector, SpiffeId};

pub(crate) use agents::*;
pub(crate) use audit::*;
pub(crate) use authorities::*;
pub(crate) use credentials::*;
pub(crate) use entries::*;
pub(crate) use federation::*;
pub(crate) use policies::*;
pub(crate) use servers::*;
pub(crate) use sightings::*;

use super::{AgentRecord, DataStore};

/// Opens the backend under test: each call another handle on the same
/// data (as another server, or the same one after a restart).
pub(crate) trait Opener: Send + Sync {
    fn open(&self) -> BoxFuture<'_, Arc<dyn DataStore>>;
}

/// One `#[tokio::test]` per conformance test, on the backend `$opener`
/// (an async fn returning an [`Opener`]) makes.
macro_rules! backend_tests {
    ($opener:path) => {
        $crate::datastore::tests::backend_tests!(@each $opener;
            join_token_is_burned_exactly_once_under_concurrent_attests,
            expired_join_token_is_refused,
            banned_agent_cannot_attest_again_and_evicted_one_is_gone,
            concurrent_agent_attestations_all_succeed,
            entries_are_filtered_counted_and_deleted,
            data_survives_reopening,
            concurrent_entry_creates_all_succeed_and_are_all_stored,
            a_batch_stores_every_entry_but_the_duplicate_each_with_its_own_revision,
            a_parents_entries_stream_in_creation_order_like_the_list,
            a_large_batch_gets_consecutive_revisions_in_order_and_reads_back_whole,
            an_id_taken_by_a_stored_or_an_earlier_batch_entry_is_refused_alone,
            entries_with_reserved_ids_are_found_by_exact_prefix,
            concurrent_serial_records_all_commit_and_a_revocation_finds_each,
            revocations_are_listed_until_they_expire,
            events_come_back_in_revision_order_and_are_pruned_from_the_oldest,
            each_servers_authorities_are_saved_whole_and_the_bundle_is_their_union,
            a_taint_or_revocation_made_elsewhere_survives_the_owners_next_save,
            active_authorities_cannot_be_tainted_or_revoked,
            servers_are_registered_listed_and_removed,
            a_removed_servers_authorities_go_once_expired,
            each_server_replaces_only_its_own_crls,
            federated_bundles_are_set_replaced_and_deleted_with_their_events,
            relationships_keep_their_first_contact_bundle_and_record_fetches,
            an_entrys_federated_trust_domains_change_under_a_new_revision,
            concurrent_appends_make_one_chain_that_verifies,
            sightings_keep_their_first_time_and_are_read_per_subject,
            policies_are_created_replaced_and_deleted_with_their_events,
        );
    };
    (@each $opener:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let opener = $opener().await;
                $crate::datastore::tests::$name(&opener).await;
            }
        )*
    };
}
pub(crate) use backend_tests;

pub(crate) fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

pub(crate) fn agent(token: &str) -> AgentRecord {
    AgentRecord {
        spiffe_id: id(&format!(
            "spiffe://example.org/signet/agent/join_token/{token}"
        )),
        attestation_type: "join_token".into(),
        serial: "01".into(),
        expires_at: 2000,
        banned: false,
        attested_at: 1000,
        selectors: vec![],
    }
}

pub(crate) fn entry(n: u32, parent: &str, selectors: &[&str]) -> RegistrationEntry {
    RegistrationEntry {
        id: format!("entry-{n}"),
        spiffe_id: id(&format!("spiffe://example.org/w{n}")),
        parent_id: id(parent),
        selectors: selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect(),
        x509_svid_ttl: Some(Duration::from_secs(60)),
        jwt_svid_ttl: None,
        dns_names: vec!["web.local".into()],
        hint: "h".into(),
        admin: false,
        downstream: true,
        revision: 0,
        federates_with: vec![],
    }
}
