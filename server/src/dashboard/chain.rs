//! The audit page's chain status: verified from where the last look
//! stopped, so each page load reads only what was appended since.

use std::sync::Mutex;

use crate::audit::{chain, Verifier};
use crate::datastore::DataStore;

/// Records read per query, and verified per page load at most.
const CHUNK: usize = 5_000;
const PER_LOAD: u64 = 200_000;

#[derive(Debug, Clone)]
pub struct Status {
    pub seq: u64,
    hash: [u8; 32],
    pub broken: Option<String>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: chain::GENESIS,
            broken: None,
        }
    }
}

impl Status {
    pub fn summary(&self) -> String {
        match &self.broken {
            Some(why) => format!(
                "Chain BROKEN: {why}. Run `signet-server audit verify` for the whole report."
            ),
            None => format!(
                "Chain intact through record {} (hash {}…).",
                self.seq,
                chain::to_hex(&self.hash).get(..16).unwrap_or_default()
            ),
        }
    }
}

#[derive(Debug, Default)]
pub struct ChainCheck {
    last: Mutex<Status>,
}

impl ChainCheck {
    /// Verifies what was appended since the last look; the status now.
    pub async fn check(&self, ds: &dyn DataStore) -> Status {
        let start = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if start.broken.is_some() {
            return start;
        }
        let mut status = start.clone();
        if status.seq == 0 {
            // Retention pruned the oldest records: the first one left is
            // checkpointed; its signed hash anchors the rest.
            if let Ok(Some(first)) = ds.audit_records(1, 1).await.map(|r| r.into_iter().next()) {
                if first.seq > 1 {
                    let anchor = ds.audit_checkpoints().await.ok().and_then(|cs| {
                        cs.into_iter()
                            .find(|c| c.seq == first.seq && c.hash == first.hash)
                            .and_then(|c| Some((c.seq, chain::from_hex(&c.hash)?)))
                    });
                    if let Some((seq, hash)) = anchor {
                        (status.seq, status.hash) = (seq, hash);
                    }
                }
            }
        }
        let mut verifier = Verifier::new(status.seq, status.hash, []);
        let mut checked = 0;
        while checked < PER_LOAD {
            let (seq, _) = verifier.head();
            let rows = match ds.audit_records(seq + 1, CHUNK).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the audit chain for the dashboard");
                    break;
                }
            };
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                if let Err(b) = verifier.feed(r) {
                    status.broken = Some(b.to_string());
                    break;
                }
            }
            checked += rows.len() as u64;
            if status.broken.is_some() || rows.len() < CHUNK {
                break;
            }
        }
        (status.seq, status.hash) = verifier.head();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if status.broken.is_some() || status.seq > last.seq {
            *last = status.clone();
        }
        last.clone()
    }
}
