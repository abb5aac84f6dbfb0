//! What the sync side hands the rotation task: one Sync message parsed, and
//! how the parts of a snapshot sent in several add up to one update.

use signet_core::bundle::Bundle;
use signet_core::{RegistrationEntry, TrustDomain};

use crate::cache::state::{Revocations, Tainted};

/// One message of the sync stream, already parsed.
#[derive(Debug, Clone, Default)]
pub struct SyncUpdate {
    /// `entries` and `previewed` are the complete set; forget anything else.
    pub snapshot: bool,
    /// Entries of a snapshot whose later parts are still arriving: upsert
    /// them (and take the bundle) so issuing starts at once; everything
    /// else, removals and the revision included, waits for the rest of the
    /// snapshot, which comes as an update of its own.
    pub preview: bool,
    /// In a snapshot: the ids of its entries already sent as previews.
    pub previewed: Vec<String>,
    pub entries: Vec<RegistrationEntry>,
    pub removed_entry_ids: Vec<String>,
    /// The trust domain's bundle, when it changed.
    pub bundle: Option<Bundle>,
    /// Bundles of other trust domains: in a snapshot the complete set (its
    /// first part carries it), else those added or changed.
    pub federated_bundles: Vec<Bundle>,
    /// Trust domains whose federated bundle is gone.
    pub removed_federated_bundles: Vec<TrustDomain>,
    /// Authorization policy sources (name, text): the whole set when
    /// `policies_complete`, else those created or replaced.
    pub policies: Vec<(String, String)>,
    pub policies_complete: bool,
    /// Names of policy sources deleted.
    pub removed_policies: Vec<String>,
    /// The message's sync revision (0: not from the server).
    pub revision: u64,
    /// Revoked credentials: the complete list in a snapshot, else additions.
    pub revocations: Revocations,
    /// DER CRLs, when they changed.
    pub crls: Option<Vec<Vec<u8>>>,
    /// The complete tainted set, when it changed.
    pub tainted: Option<Tainted>,
    /// The agent was banned or evicted (the reason): drop everything and
    /// issue nothing more.
    pub cut_off: Option<String>,
}

impl SyncUpdate {
    /// Moves this snapshot part's entries (and a copy of its bundles) into
    /// a [`Self::preview`], leaving their ids in `previewed`.
    pub fn split_preview(&mut self) -> SyncUpdate {
        let entries = std::mem::take(&mut self.entries);
        self.previewed.extend(entries.iter().map(|e| e.id.clone()));
        SyncUpdate {
            preview: true,
            entries,
            bundle: self.bundle.clone(),
            federated_bundles: self.federated_bundles.clone(),
            ..SyncUpdate::default()
        }
    }

    /// Adds a later part of the same snapshot: its entries, and whatever it
    /// sets that this part did not.
    pub fn absorb(&mut self, part: SyncUpdate) {
        self.entries.extend(part.entries);
        self.previewed.extend(part.previewed);
        self.removed_entry_ids.extend(part.removed_entry_ids);
        self.bundle = self.bundle.take().or(part.bundle);
        self.federated_bundles.extend(part.federated_bundles);
        self.removed_federated_bundles
            .extend(part.removed_federated_bundles);
        self.policies.extend(part.policies);
        self.policies_complete |= part.policies_complete;
        self.removed_policies.extend(part.removed_policies);
        self.revision = part.revision.max(self.revision);
        self.revocations
            .x509_serials
            .extend(part.revocations.x509_serials);
        self.revocations.jwt_ids.extend(part.revocations.jwt_ids);
        self.crls = self.crls.take().or(part.crls);
        self.tainted = self.tainted.take().or(part.tainted);
        self.cut_off = self.cut_off.take().or(part.cut_off);
    }
}
