//! The one writer of this server's audit records: callers hand a record
//! over and wait for its commit; whatever queues while one transaction
//! commits goes into the next together (the chain is appended in one
//! place, so a burst of decisions costs one commit, not one each).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::record::{AuditRecord, Decision};
use crate::datastore::{DataStore, DataStoreError};
use signet_core::Clock;

/// Records one group commit takes at most.
const GROUP: usize = 1024;

type Pending = (String, oneshot::Sender<Result<(), DataStoreError>>);

/// Cheap to clone; every handler holds one.
#[derive(Clone)]
pub struct Auditor {
    queue: mpsc::UnboundedSender<Pending>,
    server_id: Arc<str>,
    clock: Arc<dyn Clock>,
}

impl Auditor {
    /// Starts the writer task on `ds`.
    pub fn start(ds: Arc<dyn DataStore>, server_id: &str, clock: Arc<dyn Clock>) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(ds, rx));
        Self {
            queue,
            server_id: server_id.into(),
            clock,
        }
    }

    /// The record of `decision`, taken now by this server.
    pub fn record(&self, decision: Decision) -> AuditRecord {
        let time_ms = self
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        AuditRecord {
            time_ms,
            server_id: self.server_id.to_string(),
            decision,
        }
    }

    /// Appends `decision` and waits for its commit. A failure is logged
    /// (and returned): the decision itself was already taken.
    pub async fn append(&self, decision: Decision) -> Result<(), DataStoreError> {
        let canonical = self.record(decision).canonical();
        let (done, committed) = oneshot::channel();
        let res = match self.queue.send((canonical, done)) {
            Ok(()) => committed
                .await
                .unwrap_or(Err(DataStoreError::RecorderStopped)),
            Err(_) => Err(DataStoreError::RecorderStopped),
        };
        if let Err(e) = &res {
            tracing::error!(error = %e, "an audit record could not be written");
        }
        res
    }
}

async fn run(ds: Arc<dyn DataStore>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let (records, waiters): (Vec<String>, Vec<_>) = group.into_iter().unzip();
        let res = ds.append_audit(records).await.map(|_| ());
        for w in waiters {
            let _ = w.send(res.clone());
        }
    }
}
