//! What a batch create stores, decided the same way on every backend: each
//! entry checked against the stored ones and the batch before it (a
//! duplicate of SPIFFE ID, parent and selectors, or a taken id, is refused
//! alone), then one revision each, in batch order.

use std::collections::{HashMap, HashSet};

use signet_core::{RegistrationEntry, Selector};

use super::{DataStoreError, EntryRecord, NewEntry, Result};

pub(super) fn duplicate(id: &str) -> DataStoreError {
    DataStoreError::AlreadyExists(format!(
        "an entry with this SPIFFE ID, parent ID and selectors already exists (id {id})"
    ))
}

pub(super) fn id_taken(id: &str) -> DataStoreError {
    DataStoreError::AlreadyExists(format!("entry id {id} already exists"))
}

/// The stored twin of `entry` (same SPIFFE ID, parent and selectors) among
/// `stored`, refused as a duplicate.
pub(super) fn check_not_duplicate(entry: &RegistrationEntry, stored: &[EntryRecord]) -> Result<()> {
    match stored.iter().find(|s| {
        s.entry.spiffe_id == entry.spiffe_id
            && s.entry.parent_id == entry.parent_id
            && s.entry.selectors == entry.selectors
    }) {
        Some(twin) => Err(duplicate(&twin.entry.id)),
        None => Ok(()),
    }
}

/// The selectors and ids of the entries with one SPIFFE ID and parent.
type Twins = Vec<(Vec<Selector>, String)>;

/// Each entry's verdict: `stored` holds the stored entries with one of the
/// batch's SPIFFE IDs, `taken` the batch's ids that are stored already.
pub(super) fn verdicts(
    entries: Vec<NewEntry>,
    stored: Vec<EntryRecord>,
    mut taken: HashSet<String>,
) -> Vec<Result<NewEntry>> {
    let mut same_ids: HashMap<(String, String), Twins> = HashMap::new();
    for s in stored {
        let e = s.entry;
        same_ids
            .entry((e.spiffe_id.to_string(), e.parent_id.to_string()))
            .or_default()
            .push((e.selectors, e.id));
    }
    let mut out = Vec::with_capacity(entries.len());
    for new in entries {
        let key = (
            new.entry.spiffe_id.to_string(),
            new.entry.parent_id.to_string(),
        );
        let twins = same_ids.entry(key).or_default();
        if let Some((_, id)) = twins.iter().find(|(sel, _)| *sel == new.entry.selectors) {
            out.push(Err(duplicate(id)));
            continue;
        }
        if !taken.insert(new.entry.id.clone()) {
            out.push(Err(id_taken(&new.entry.id)));
            continue;
        }
        twins.push((new.entry.selectors.clone(), new.entry.id.clone()));
        out.push(Ok(new));
    }
    out
}

/// How many of `verdicts` are stored (the revisions to reserve).
pub(super) fn accepted(verdicts: &[Result<NewEntry>]) -> u64 {
    verdicts.iter().filter(|v| v.is_ok()).count() as u64
}

/// The records to store: consecutive revisions from `first`, in order.
pub(super) fn records(
    verdicts: Vec<Result<NewEntry>>,
    first: u64,
    created_at: i64,
) -> Vec<Result<EntryRecord>> {
    let mut next = first;
    verdicts
        .into_iter()
        .map(|verdict| {
            verdict.map(|new| {
                let record = EntryRecord {
                    entry: RegistrationEntry {
                        revision: next,
                        ..new.entry
                    },
                    created_at,
                    node: new.node,
                };
                next += 1;
                record
            })
        })
        .collect()
}

/// The `EntryCreated` event of each stored record.
pub(super) fn created_events(stored: &[&EntryRecord]) -> Vec<std::sync::Arc<crate::events::Event>> {
    stored
        .iter()
        .map(|rec| {
            std::sync::Arc::new(crate::events::Event {
                revision: rec.entry.revision,
                change: crate::events::Change::EntryCreated((*rec).clone()),
            })
        })
        .collect()
}
