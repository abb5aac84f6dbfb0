//! The authorization policies the rotation task holds: replaced as a whole
//! by a sync snapshot, changed one source at a time by deltas, published
//! with the rest of the snapshot (so a change reaches every local decision
//! as soon as it is applied).

use std::sync::Arc;

use super::CacheManager;
use crate::cache::policies::HeldPolicies;

impl CacheManager {
    /// With `complete` (a snapshot), `sources` is the whole set; otherwise
    /// `removed` go and `sources` are added or replace the held ones.
    pub(super) fn update_policies(
        &mut self,
        complete: bool,
        sources: Vec<(String, String)>,
        removed: Vec<String>,
    ) {
        if !complete && sources.is_empty() && removed.is_empty() {
            return;
        }
        let mut next = if complete {
            Default::default()
        } else {
            self.policies.sources.clone()
        };
        for name in &removed {
            next.remove(name);
        }
        next.extend(sources);
        if next == self.policies.sources {
            return;
        }
        let held = self.policies.replaced_by(next);
        tracing::info!(
            sources = held.sources.len(),
            policies = held.engine.policies().len(),
            "authorization policies updated"
        );
        self.policies = Arc::new(held);
        self.dirty = true;
    }

    /// Takes the policies a previous run left on disk.
    pub(super) fn restore_policies(&mut self, sources: Vec<(String, String)>) {
        let held = HeldPolicies::default().replaced_by(sources.into_iter().collect());
        self.policies = Arc::new(held);
    }
}
