//! `[audit] retention`: records older than it are deleted, but only up to
//! a signed checkpoint: the checkpointed record stays as the first, so the
//! chain goes on from it and what remains verifies from the checkpoint's
//! signed hash (`audit verify` starts there). Each pruning is a record.
//! Runs hourly on every server (deleting what another already deleted
//! changes nothing).

use std::sync::Arc;
use std::time::Duration;

use signet_core::Clock;
use tokio::sync::watch;

use super::{AuditRecord, Auditor, Decision};
use crate::datastore::{DataStore, Result};

const EVERY: Duration = Duration::from_secs(3600);

pub async fn run(
    ds: Arc<dyn DataStore>,
    audit: Auditor,
    retention: Duration,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let now_ms = clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        match prune_once(ds.as_ref(), &audit, retention, now_ms).await {
            Ok(Some(through)) => {
                tracing::info!(through, "pruned audit records past their retention")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "pruning the audit log failed; retrying in an hour")
            }
        }
    }
}

/// Deletes the records before the newest checkpoint whose record is older
/// than `retention`; the last one deleted, if any.
pub async fn prune_once(
    ds: &dyn DataStore,
    audit: &Auditor,
    retention: Duration,
    now_ms: i64,
) -> Result<Option<u64>> {
    let cutoff = now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let Some(first) = ds.audit_records(1, 1).await?.into_iter().next() else {
        return Ok(None);
    };
    for c in ds.audit_checkpoints().await?.iter().rev() {
        if c.seq <= first.seq {
            break;
        }
        let Some(r) = ds.audit_records(c.seq, 1).await?.into_iter().next() else {
            continue;
        };
        let old = r.seq == c.seq
            && r.hash == c.hash
            && AuditRecord::parse(&r.record).is_ok_and(|a| a.time_ms < cutoff);
        if !old {
            continue;
        }
        let deleted = ds.prune_audit(c.seq - 1).await?;
        audit
            .append(Decision::AuditPruned {
                through_seq: c.seq - 1,
                checkpoint_hash: c.hash.clone(),
                records: deleted,
            })
            .await?;
        return Ok(Some(c.seq - 1));
    }
    Ok(None)
}
