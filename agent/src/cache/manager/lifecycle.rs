//! The parts of the rotation task that react to what the server says about
//! credentials rather than to time: the cache a previous run left on disk,
//! revocations, tainted authorities, and being cut off (banned or evicted).

use std::sync::Arc;

use signet_core::jwt::JwtBundles;
use signet_core::rotation::{refresh_at_prefetch, wait_until};
use tokio::time::Instant;

use super::CacheManager;
use crate::cache::persist::Restored;
use crate::cache::state::{EntryId, Revocations};

impl CacheManager {
    /// Takes over what a previous run left on disk and publishes it at once,
    /// before anything reaches the server: expired SVIDs are skipped, the
    /// rest are renewed on their usual schedule.
    pub fn restore(&mut self, restored: Restored) {
        let now = self.clock.now();
        let instant = Instant::now();
        self.revision = restored.revision;
        if !restored.bundle.is_empty() {
            self.bundle = Some(Arc::new(restored.bundle));
        }
        let mut bundles = JwtBundles::new();
        bundles.insert(
            self.trust_domain.clone(),
            restored.jwt_keys.into_iter().collect(),
        );
        self.jwt_bundles = Arc::new(bundles);
        self.restore_federated(restored.federated_bundles);
        self.restore_policies(restored.policies);
        self.crls = Arc::new(restored.crls);
        self.revocations = restored.revocations;
        self.revocations.prune(now);
        self.tainted = Arc::new(restored.tainted);
        for (entry, svid) in restored.entries {
            let id = EntryId::from(entry.id.as_str());
            self.entries.insert(id.clone(), Arc::new(entry));
            match svid.filter(|s| s.svid.is_valid_at(now)) {
                Some(s) => {
                    let refresh = refresh_at_prefetch(
                        s.not_before,
                        s.svid.x509.not_after,
                        (self.jitter)(),
                        self.prefetch,
                    );
                    self.due.set(&id, instant + wait_until(now, refresh));
                    let expires = instant + wait_until(now, s.svid.x509.not_after);
                    self.hold(&id, Arc::new(s.svid), expires);
                }
                None => {
                    self.due.set(&id, instant);
                }
            }
        }
        self.mark_for_reissue();
        self.dirty = true;
        self.publish_if_dirty();
    }
    /// Takes the revocations of an update; true when they changed.
    pub(super) fn apply_revocations(&mut self, snapshot: bool, revocations: Revocations) -> bool {
        let merged = if snapshot {
            revocations
        } else {
            let mut merged = self.revocations.clone();
            merged.x509_serials.extend(revocations.x509_serials);
            merged.jwt_ids.extend(revocations.jwt_ids);
            merged
        };
        if merged != self.revocations {
            self.revocations = merged;
            self.dirty = true;
            return true;
        }
        false
    }

    /// Every held SVID signed by a tainted authority or carrying a revoked
    /// serial is re-issued now; it stays served until the new one arrives.
    pub(super) fn mark_for_reissue(&mut self) {
        if self.tainted.x509.is_empty() && self.revocations.x509_serials.is_empty() {
            return;
        }
        let now = self.clock.now();
        let at = Instant::now();
        for (id, svid) in &self.held {
            let tainted = self.tainted.x509.contains(&*svid.x509.authority_id);
            let revoked = self
                .revocations
                .is_serial_revoked(&svid.x509.serial_hex, now);
            // Not when it is due already or awaited (its answer is checked).
            let due_later = self.due.get(id).is_some_and(|d| d > at);
            if (tainted || revoked) && due_later {
                tracing::info!(
                    entry_id = &**id,
                    authority_id = &*svid.x509.authority_id,
                    serial = svid.x509.serial_hex,
                    tainted,
                    revoked,
                    "re-issuing SVID at once"
                );
                self.due.set(id, at);
                self.retries.remove(&**id);
            }
        }
    }

    /// Banned or evicted: nothing held is served any more, nothing is issued.
    pub(super) fn cut_off(&mut self, reason: &str) {
        tracing::error!(reason, "agent cut off by the server: dropping every SVID");
        self.cut_off = true;
        // Freeing a cold start's state (tens of thousands of allocations)
        // takes milliseconds of CPU; it is done on a bulk thread, not here
        // between the ban and the empty snapshot the workloads wait for.
        // Rounds under way are cancelled with their futures.
        let discarded = (
            std::mem::take(&mut self.entries),
            std::mem::take(&mut self.held),
            std::mem::take(&mut self.expiries),
            std::mem::take(&mut self.due),
            std::mem::take(&mut self.retries),
            std::mem::take(&mut self.rounds),
            std::mem::take(&mut self.awaited),
        );
        // Queued at once; nothing to wait for.
        drop(signet_runtime::bulk::run(move || drop(discarded)));
        self.federated = Arc::default();
        self.policies = Arc::default();
        self.revision = 0;
        self.dirty = true;
    }
}
