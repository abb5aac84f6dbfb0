//! Creating registration entries, one (CreateEntry) or a batch
//! (BatchCreateEntry): the same validation, then the datastore, a log line
//! per entry, and an event per entry on the change bus once it is committed.

use signet_core::clock::unix_seconds;
use signet_proto::admin::{CreateEntryResult, Entry};

use super::convert::admin_entry;
use super::status::ApiError;
use super::validate::new_registration;
use super::ServerState;
use crate::datastore::{EntryRecord, NewEntry};

/// Most entries one BatchCreateEntry may carry: it bounds the response size
/// and how long one write transaction holds the database, and keeps a
/// batch's events within what a caught-up Sync stream can take without
/// falling back to a snapshot.
pub const MAX_BATCH: usize = 1000;
const _: () = assert!(MAX_BATCH <= crate::events::CAPACITY);

fn validated(state: &ServerState, req: &Entry) -> Result<NewEntry, ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    Ok(new_registration(req, state.ca.trust_domain(), id)?)
}

fn log_created(rec: &EntryRecord) {
    tracing::info!(
        entry_id = %rec.entry.id,
        spiffe_id = %rec.entry.spiffe_id,
        parent_id = %rec.entry.parent_id,
        node_alias = rec.node,
        "entry created"
    );
}

pub async fn create_one(state: &ServerState, req: &Entry) -> Result<Entry, ApiError> {
    let new = validated(state, req)?;
    let created_at = unix_seconds(state.ca.now());
    let rec = if new.node {
        state.ds.create_node_alias(new.entry, created_at).await?
    } else {
        state.ds.create_entry(new.entry, created_at).await?
    };
    log_created(&rec);
    Ok(admin_entry(&rec))
}

/// One result per request entry, in order; a refused entry does not stop
/// the others.
pub async fn create_batch(
    state: &ServerState,
    entries: &[Entry],
) -> Result<Vec<CreateEntryResult>, ApiError> {
    if entries.len() > MAX_BATCH {
        return Err(ApiError::InvalidArgument(format!(
            "a batch holds at most {MAX_BATCH} entries, got {}; split it",
            entries.len()
        )));
    }
    // `None`: valid, its outcome comes from the datastore, in order.
    let mut refusals = Vec::with_capacity(entries.len());
    let mut valid = Vec::with_capacity(entries.len());
    for req in entries {
        match validated(state, req) {
            Ok(new) => {
                valid.push(new);
                refusals.push(None);
            }
            Err(e) => refusals.push(Some(e)),
        }
    }
    let count = valid.len();
    let created_at = unix_seconds(state.ca.now());
    let mut stored = match state.ds.create_entries(valid, created_at).await {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| o.map_err(ApiError::from))
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, entries = count, "storing a batch of entries failed");
            vec![Err(ApiError::from(e)); count]
        }
    }
    .into_iter();

    let mut results = Vec::with_capacity(entries.len());
    for (req, refusal) in entries.iter().zip(refusals) {
        let outcome = match refusal {
            Some(e) => Err(e),
            None => stored.next().unwrap_or_else(|| {
                Err(ApiError::Internal(
                    "the datastore returned fewer results than entries".into(),
                ))
            }),
        };
        results.push(match outcome {
            Ok(rec) => {
                log_created(&rec);
                let entry = admin_entry(&rec);
                CreateEntryResult {
                    entry: Some(entry),
                    error_code: 0,
                    error_message: String::new(),
                }
            }
            Err(e) => {
                tracing::warn!(spiffe_id = %req.spiffe_id, error = %e, "entry refused");
                CreateEntryResult {
                    entry: None,
                    error_code: e.code() as i32,
                    error_message: e.to_string(),
                }
            }
        });
    }
    Ok(results)
}
