//! Group commit of issued serials, for every backend: whatever signing
//! batches queue while one transaction commits go into the next together,
//! so eight batches in flight cost about one sync to disk, not eight.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::{DataStoreError, IssuedX509, Result};

/// Rows one group commit takes at most: eight batches of 128, one agent's
/// rounds in flight. Any other write (a ban) waits for at most one group.
const GROUP_ROWS: usize = 1024;

/// Serials of one signing batch, and who waits for their commit.
#[derive(Debug)]
pub struct PendingRecords {
    rows: Vec<IssuedX509>,
    done: oneshot::Sender<Result<()>>,
}

/// The sending half: [`record`](Self::record) returns once the rows are
/// committed (or failed with their group).
#[derive(Debug, Clone)]
pub struct Recorder(mpsc::UnboundedSender<PendingRecords>);

impl Recorder {
    /// Starts the task that commits each group with `insert`.
    pub fn start<F, Fut>(insert: F) -> Self
    where
        F: Fn(Vec<IssuedX509>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let (tx, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(queue, insert));
        Self(tx)
    }

    pub async fn record(&self, rows: Vec<IssuedX509>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let (done, committed) = oneshot::channel();
        self.0
            .send(PendingRecords { rows, done })
            .map_err(|_| DataStoreError::RecorderStopped)?;
        committed
            .await
            .map_err(|_| DataStoreError::RecorderStopped)?
    }
}

/// A group never waits for more to arrive; a failed transaction fails every
/// batch in it (none of their SVIDs is handed out).
async fn run<F, Fut>(mut queue: mpsc::UnboundedReceiver<PendingRecords>, insert: F)
where
    F: Fn(Vec<IssuedX509>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    while let Some(first) = queue.recv().await {
        let mut rows = first.rows.len();
        let mut group = vec![first];
        while rows < GROUP_ROWS {
            match queue.try_recv() {
                Ok(more) => {
                    rows += more.rows.len();
                    group.push(more);
                }
                Err(_) => break,
            }
        }
        let mut all = Vec::with_capacity(rows);
        let mut waiting = Vec::with_capacity(group.len());
        for pending in group {
            all.extend(pending.rows);
            waiting.push(pending.done);
        }
        let result = insert(all).await;
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
}
