//! BatchSignX509SVID: the entries of a batch read in one query and the
//! agent's alias memberships at most once; CSR checks and signatures spread
//! over the cores off the async workers; every issued SVID recorded in one
//! transaction (one sync to disk per batch, not per SVID) before any is
//! handed out, so a serial the agent holds can always be revoked.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use signet_core::clock::unix_seconds;
use signet_core::x509::parse_csr;
use signet_core::SpiffeId;
use signet_proto::node::{SignX509SvidParams, SignX509SvidResult};

use super::status::ApiError;
use super::ServerState;
use crate::alias::Members;
use crate::audit::Decision;
use signet_core::X509Svid;

use crate::ca::CertificateAuthority;
use crate::datastore::{AgentRecord, EntryRecord, IssuedX509};

/// Below this many CSRs per thread, handing work to another thread costs
/// more than it saves.
const MIN_PER_THREAD: usize = 16;

/// CSRs one call may carry (agents send 128): the whole batch is signed
/// and recorded before the call returns, so it is bounded where it enters.
pub const MAX_BATCH: usize = 1024;

/// What one CSR is signed as, taken from its entry.
struct Job {
    index: usize,
    spiffe_id: SpiffeId,
    dns_names: Vec<String>,
    ttl: Option<Duration>,
    csr: Vec<u8>,
}

/// Signs every CSR the agent may have signed; one result per item, in order.
/// Only a datastore failure fails the whole batch.
pub async fn sign(
    state: &ServerState,
    agent: &AgentRecord,
    params: Vec<SignX509SvidParams>,
) -> Result<Vec<SignX509SvidResult>, ApiError> {
    if params.len() > MAX_BATCH {
        return Err(ApiError::InvalidArgument(format!(
            "a batch of {} CSRs is larger than the {MAX_BATCH} one call may carry",
            params.len()
        )));
    }
    let mut outcomes: Vec<Option<Result<X509Svid, ApiError>>> =
        (0..params.len()).map(|_| None).collect();
    let entry_ids: Vec<String> = params.iter().map(|p| p.entry_id.clone()).collect();
    let jobs = authorize(state, agent, params, &mut outcomes).await?;

    let ca = state.ca.clone();
    for (index, res) in sign_in_parallel(ca, jobs).await {
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = Some(res);
        }
    }
    record(state, agent, &entry_ids, &mut outcomes).await;

    let mut issued = 0;
    let mut signed_ids = Vec::new();
    let results = entry_ids
        .into_iter()
        .zip(outcomes)
        .map(|(entry_id, outcome)| {
            let outcome = outcome.unwrap_or_else(|| {
                Err(ApiError::Internal("the CSR was not processed".into()))
            });
            match outcome {
                Ok(svid) => {
                    issued += 1;
                    signed_ids.push(svid.spiffe_id.clone());
                    tracing::debug!(
                        agent = %agent.spiffe_id, entry_id = %entry_id,
                        serial = %svid.serial_hex, "issued X.509-SVID"
                    );
                    SignX509SvidResult {
                        entry_id,
                        svid_chain: svid.chain,
                        error_code: 0,
                        error_message: String::new(),
                        authority_id: svid.authority_id.to_string(),
                    }
                }
                Err(e) => {
                    tracing::warn!(agent = %agent.spiffe_id, entry_id = %entry_id, error = %e, "refused to sign");
                    SignX509SvidResult {
                        entry_id,
                        svid_chain: vec![],
                        error_code: e.code() as i32,
                        error_message: e.to_string(),
                        authority_id: String::new(),
                    }
                }
            }
        })
        .collect();
    state.metrics.x509_svids_issued(issued);
    if !signed_ids.is_empty() {
        state
            .anomalies
            .observe(crate::anomaly::Observation::X509Issued {
                agent: agent.spiffe_id.clone(),
                spiffe_ids: signed_ids,
            });
    }
    if issued > 0 {
        tracing::info!(agent = %agent.spiffe_id, count = issued, "issued X.509-SVIDs");
    }
    Ok(results)
}

/// The jobs for the items the agent may have signed; refusals go straight
/// into `outcomes`.
async fn authorize(
    state: &ServerState,
    agent: &AgentRecord,
    params: Vec<SignX509SvidParams>,
    outcomes: &mut [Option<Result<X509Svid, ApiError>>],
) -> Result<Vec<Job>, ApiError> {
    let ids: Vec<&str> = params.iter().map(|p| p.entry_id.as_str()).collect();
    let entries: HashMap<String, EntryRecord> = state
        .ds
        .get_entries(&ids)
        .await?
        .into_iter()
        .map(|e| (e.entry.id.clone(), e))
        .collect();
    let mut members = Members::new(agent);
    let mut jobs = Vec::with_capacity(params.len());
    for (index, p) in params.into_iter().enumerate() {
        let refusal = match entries.get(&p.entry_id) {
            None => Some(ApiError::NotFound(format!(
                "entry {:?} not found",
                p.entry_id
            ))),
            Some(rec) if !members.authorizes(state.ds.as_ref(), rec).await? => Some(
                ApiError::PermissionDenied("entry is not authorized for this agent".into()),
            ),
            Some(rec) => {
                jobs.push(Job {
                    index,
                    spiffe_id: rec.entry.spiffe_id.clone(),
                    dns_names: rec.entry.dns_names.clone(),
                    ttl: rec.entry.x509_svid_ttl,
                    csr: p.csr,
                });
                None
            }
        };
        if let (Some(e), Some(slot)) = (refusal, outcomes.get_mut(index)) {
            *slot = Some(Err(e));
        }
    }
    Ok(jobs)
}

/// Checks and signs the jobs on the bulk threads (below the server's
/// priority, so a ban's commit and the Sync streams never queue behind a
/// cold start's signatures), a share per core.
async fn sign_in_parallel(
    ca: Arc<CertificateAuthority>,
    mut jobs: Vec<Job>,
) -> Vec<(usize, Result<X509Svid, ApiError>)> {
    let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let per_thread = jobs.len().div_ceil(threads).max(MIN_PER_THREAD);
    let mut tasks = Vec::new();
    while !jobs.is_empty() {
        let share: Vec<Job> = jobs.drain(..per_thread.min(jobs.len())).collect();
        let indexes: Vec<usize> = share.iter().map(|j| j.index).collect();
        let ca = ca.clone();
        let task = signet_runtime::bulk::run(move || {
            share
                .into_iter()
                .map(|job| (job.index, sign_one(&ca, &job)))
                .collect::<Vec<_>>()
        });
        tasks.push((indexes, task));
    }
    let mut out = Vec::new();
    for (indexes, task) in tasks {
        match task.await {
            Ok(done) => out.extend(done),
            Err(e) => out.extend(indexes.into_iter().map(|i| {
                (
                    i,
                    Err(ApiError::Internal(format!("signing task failed: {e}"))),
                )
            })),
        }
    }
    out
}

fn sign_one(ca: &CertificateAuthority, job: &Job) -> Result<X509Svid, ApiError> {
    let csr =
        parse_csr(&job.csr).map_err(|e| ApiError::InvalidArgument(format!("invalid CSR: {e}")))?;
    if csr.spiffe_id != job.spiffe_id {
        return Err(ApiError::InvalidArgument(format!(
            "CSR SPIFFE ID {} does not match entry SPIFFE ID {}",
            csr.spiffe_id, job.spiffe_id
        )));
    }
    Ok(ca.issue_x509_svid(&job.spiffe_id, &csr.public_key, &job.dns_names, job.ttl)?)
}

/// Records every SVID signed in this batch, each with its audit record, in
/// one transaction; if that fails none is handed out: each becomes the
/// datastore's error.
async fn record(
    state: &ServerState,
    agent: &AgentRecord,
    entry_ids: &[String],
    outcomes: &mut [Option<Result<X509Svid, ApiError>>],
) {
    let now = state.ca.now();
    let records: Vec<IssuedX509> = outcomes
        .iter()
        .zip(entry_ids)
        .filter_map(|(o, entry_id)| match o {
            Some(Ok(svid)) => Some((svid, entry_id)),
            _ => None,
        })
        .map(|(svid, entry_id)| {
            let audit = state.audit.record(Decision::X509SvidIssued {
                spiffe_id: svid.spiffe_id.to_string(),
                serial: svid.serial_hex.clone(),
                entry_id: entry_id.clone(),
                agent_id: agent.spiffe_id.to_string(),
                ttl_s: svid
                    .not_after
                    .duration_since(now)
                    .map_or(0, |d| d.as_secs()),
            });
            IssuedX509 {
                serial: svid.serial_hex.clone(),
                spiffe_id: svid.spiffe_id.clone(),
                authority_id: svid.authority_id.to_string(),
                expires_at: unix_seconds(svid.not_after),
                audit: Some(audit.canonical()),
            }
        })
        .collect();
    if records.is_empty() {
        return;
    }
    if let Err(e) = state.ds.record_x509_many(records).await {
        let e = ApiError::from(e);
        for o in outcomes.iter_mut() {
            if matches!(o, Some(Ok(_))) {
                *o = Some(Err(e.clone()));
            }
        }
    }
}
