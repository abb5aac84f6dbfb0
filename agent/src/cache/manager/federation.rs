//! The bundles of federated trust domains the rotation task holds: replaced
//! as a whole by a sync snapshot, added, replaced or removed one trust domain
//! at a time by deltas, kept apart from the own bundle. A bundle that claims
//! the agent's own trust domain is refused wherever it comes from: a peer
//! must never be able to replace what the agent's SVIDs are checked against.

use std::sync::Arc;

use signet_core::bundle::Bundle;
use signet_core::TrustDomain;

use super::CacheManager;
use crate::cache::state::FederatedBundles;

impl CacheManager {
    /// Applies what a sync update says about federated bundles: with
    /// `replace_all` (a snapshot) `bundles` is the complete set; otherwise
    /// `removed` go, then `bundles` are added or replace the held ones (the
    /// order entries follow too).
    pub(super) fn update_federated(
        &mut self,
        replace_all: bool,
        bundles: Vec<Bundle>,
        removed: Vec<TrustDomain>,
    ) {
        if !replace_all && bundles.is_empty() && removed.is_empty() {
            return;
        }
        let mut next: FederatedBundles = if replace_all {
            FederatedBundles::new()
        } else {
            (*self.federated).clone()
        };
        for td in &removed {
            next.remove(td);
        }
        for bundle in bundles {
            if let Some(bundle) = self.federated_bundle(bundle) {
                next.insert(bundle.trust_domain.clone(), Arc::new(bundle));
            }
        }
        self.set_federated(next);
    }

    /// Takes the bundles a previous run left on disk.
    pub(super) fn restore_federated(&mut self, bundles: Vec<Bundle>) {
        let held: FederatedBundles = bundles
            .into_iter()
            .filter_map(|b| self.federated_bundle(b))
            .map(|b| (b.trust_domain.clone(), Arc::new(b)))
            .collect();
        self.federated = Arc::new(held);
    }

    /// `bundle`, unless it claims the own trust domain.
    fn federated_bundle(&self, bundle: Bundle) -> Option<Bundle> {
        if bundle.trust_domain == self.trust_domain {
            tracing::warn!(
                trust_domain = %bundle.trust_domain,
                "ignoring a federated bundle for the agent's own trust domain: only the server's own bundle is trusted for it"
            );
            return None;
        }
        Some(bundle)
    }

    fn set_federated(&mut self, next: FederatedBundles) {
        if *self.federated == next {
            return;
        }
        for (td, bundle) in &next {
            if self.federated.get(td) != Some(bundle) {
                tracing::info!(
                    trust_domain = %td,
                    sequence = bundle.sequence,
                    x509_authorities = bundle.x509_authorities.len(),
                    jwt_authorities = bundle.jwt_authorities.len(),
                    "federated bundle updated"
                );
            }
        }
        for td in self.federated.keys().filter(|td| !next.contains_key(*td)) {
            tracing::info!(trust_domain = %td, "federated bundle removed");
        }
        self.federated = Arc::new(next);
        self.dirty = true;
    }
}
