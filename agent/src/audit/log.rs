//! The log file and its one writer: a thread of its own (the file is
//! written and synced there, never on the runtime). Decisions are pushed
//! onto a bounded in-memory queue; the writer wakes when the queue stops
//! being empty, lets it fill for `FLUSH_EVERY`, then chains, writes and
//! syncs the whole batch at once. So a busy agent pays one wake-up and one
//! sync per batch, not per call, and the Workload API never waits on the
//! disk. A full queue drops the record and counts it
//! (`signet_agent_audit_records_dropped_total`). `close` writes what is
//! queued before the agent exits.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use signet_core::audit_chain::{from_hex, link, to_hex, GENESIS};

use super::WorkloadRecord;
use crate::telemetry::Metrics;

pub const LOG_FILE: &str = "workload_audit.jsonl";
const QUEUE: usize = 65_536;
/// How long a batch gathers once the first record of it arrived: the
/// latest a decision reaches the disk (plus the sync).
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// How long `close` waits for the last batch.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One line of the file: the record as it was hashed, and the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub seq: u64,
    pub hash: String,
    pub record: String,
}

/// The chain's last record: what is reported to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
}

#[derive(Default)]
struct Queue {
    records: Vec<WorkloadRecord>,
    closing: bool,
}

/// What the Workload API handlers and the writer thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when the queue stops being empty, and on close.
    filled: Condvar,
    /// The last record written and synced.
    head: Mutex<Head>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere leaves the data consistent: every critical
    // section here is a push, a swap or a copy.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
    metrics: Arc<Metrics>,
}

/// The last complete line of `path`, after cutting a torn tail (a crash in
/// the middle of a write) off the file.
fn recover(path: &Path) -> std::io::Result<Head> {
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Head {
                seq: 0,
                hash: GENESIS,
            })
        }
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let tail_len = len.min(256 * 1024);
    f.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::with_capacity(tail_len as usize);
    f.read_to_end(&mut tail)?;
    let Some(end) = tail.iter().rposition(|b| *b == b'\n') else {
        if len > 0 && tail_len == len {
            // Not one complete line: the file holds nothing usable.
            f.set_len(0)?;
        }
        return Ok(Head {
            seq: 0,
            hash: GENESIS,
        });
    };
    let complete = len - tail_len + end as u64 + 1;
    if complete < len {
        f.set_len(complete)?;
    }
    let body = tail.get(..end).unwrap_or_default();
    let last = body.rsplit(|b| *b == b'\n').next().unwrap_or_default();
    let line: Line = serde_json::from_slice(last)
        .map_err(|e| std::io::Error::other(format!("{}: last line: {e}", path.display())))?;
    Ok(Head {
        seq: line.seq,
        hash: from_hex(&line.hash).unwrap_or(GENESIS),
    })
}

/// Chains `batch` after `head`, appends it to `file` in one write and
/// syncs; `head` moves only once the batch is on disk. `out` is a buffer
/// kept between batches.
fn write_batch(
    file: &mut File,
    head: &mut Head,
    batch: &[WorkloadRecord],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    out.clear();
    let mut next = *head;
    for r in batch {
        let record = r.canonical();
        next.seq += 1;
        next.hash = link(&next.hash, &record);
        let line = Line {
            seq: next.seq,
            hash: to_hex(&next.hash),
            record,
        };
        serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::other)?;
        out.push(b'\n');
    }
    file.write_all(out)?;
    file.sync_data()?;
    *head = next;
    Ok(())
}

/// The writer thread: one batch per wake-up, until `close`.
fn write_loop(mut file: File, mut head: Head, shared: Arc<Shared>, metrics: Arc<Metrics>) {
    let mut batch = Vec::new();
    let mut out = Vec::new();
    loop {
        let mut queue = lock(&shared.queue);
        while queue.records.is_empty() && !queue.closing {
            queue = shared.filled.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
        // Let the batch gather (records arriving now do not signal); a
        // close cuts it short.
        queue = shared
            .filled
            .wait_timeout_while(queue, FLUSH_EVERY, |q| !q.closing)
            .map_or_else(|e| e.into_inner().0, |(q, _)| q);
        std::mem::swap(&mut queue.records, &mut batch);
        let closing = queue.closing;
        drop(queue);
        if !batch.is_empty() {
            match write_batch(&mut file, &mut head, &batch, &mut out) {
                Ok(()) => *lock(&shared.head) = head,
                Err(e) => {
                    metrics.audit_dropped.inc_by(batch.len() as u64);
                    tracing::error!(error = %e, records = batch.len(), "workload audit records not written");
                }
            }
            batch.clear();
        }
        if closing {
            return;
        }
    }
}

impl AuditLog {
    /// Opens (creating, 0600) the log in `data_dir` and starts its writer.
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let path = data_dir.join(LOG_FILE);
        let head = recover(&path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            filled: Condvar::new(),
            head: Mutex::new(head),
        });
        let writer = {
            let shared = shared.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name("workload-audit".into())
                .spawn(move || write_loop(file, head, shared, metrics))?
        };
        Ok(Self {
            shared,
            writer: Arc::new(Mutex::new(Some(writer))),
            metrics,
        })
    }

    /// Queues `record`; never waits on the disk.
    pub fn record(&self, record: WorkloadRecord) {
        let mut queue = lock(&self.shared.queue);
        if queue.closing || queue.records.len() >= QUEUE {
            drop(queue);
            self.metrics.audit_dropped.inc();
            return;
        }
        let first = queue.records.is_empty();
        queue.records.push(record);
        drop(queue);
        // Only the first record of a batch wakes the writer.
        if first {
            self.shared.filled.notify_one();
        }
    }

    /// The last record written (and synced).
    pub fn head(&self) -> Head {
        *lock(&self.shared.head)
    }

    /// Writes what is queued and stops the writer (on shutdown; records
    /// after this are dropped and counted).
    pub async fn close(&self) {
        lock(&self.shared.queue).closing = true;
        self.shared.filled.notify_one();
        let Some(writer) = lock(&self.writer).take() else {
            return;
        };
        let joined = tokio::time::timeout(
            CLOSE_TIMEOUT,
            tokio::task::spawn_blocking(move || writer.join()),
        )
        .await;
        if joined.is_err() {
            tracing::warn!("the workload audit log's last batch was not written in time");
        }
    }
}

/// Every line of the log at `path`, in order (for `audit verify`).
pub fn read_lines(path: &Path) -> std::io::Result<Vec<Result<Line, String>>> {
    let f = File::open(path)?;
    Ok(BufReader::new(f)
        .lines()
        .map(|l| {
            l.map_err(|e| e.to_string())
                .and_then(|l| serde_json::from_str::<Line>(&l).map_err(|e| e.to_string()))
        })
        .collect())
}

/// The log file in `data_dir`.
pub fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOG_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(uid: u32) -> WorkloadRecord {
        WorkloadRecord {
            time_ms: 1,
            call: "fetch_x509_svid".into(),
            pid: Some(7),
            uid,
            gid: uid,
            selectors: vec!["unix:uid:1000".into()],
            served: vec!["spiffe://example.org/w".into()],
            outcome: super::super::Outcome::Ok,
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_and_the_chain_goes_on_from_the_last_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut head = Head {
            seq: 0,
            hash: GENESIS,
        };
        write_batch(&mut f, &mut head, &[record(1), record(2)], &mut Vec::new()).unwrap();
        // A crash in the middle of the third line.
        f.write_all(b"{\"seq\":3,\"hash\":\"ab").unwrap();
        drop(f);
        assert_eq!(recover(&path).unwrap(), head);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 2, "{text}");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        let mut again = recover(&path).unwrap();
        write_batch(&mut f, &mut again, &[record(3)], &mut Vec::new()).unwrap();
        let summary = super::super::verify::verify(&path, &[]).unwrap();
        assert_eq!((summary.records, summary.last), (3, 3));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn close_writes_every_queued_record_and_what_comes_later_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let log = AuditLog::open(dir.path(), metrics.clone()).unwrap();
        for uid in 0..1000 {
            log.record(record(uid));
        }
        log.close().await;
        assert_eq!(log.head().seq, 1000);
        log.record(record(1));
        assert_eq!(metrics.audit_dropped.get(), 1);
        let summary = super::super::verify::verify(&log_path(dir.path()), &[]).unwrap();
        assert_eq!((summary.records, summary.last), (1000, 1000));
        // Reopened, the chain goes on from the last record.
        let log = AuditLog::open(dir.path(), metrics).unwrap();
        log.record(record(2));
        log.close().await;
        assert_eq!(log.head().seq, 1001);
    }
}
