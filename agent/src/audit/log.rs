//! The log file and its one writer: a thread of its own (the file is
//! written and synced there, never on the runtime), taking records from a
//! bounded queue in batches, one sync per batch. A full queue drops the
//! record and counts it (`signet_agent_audit_records_dropped_total`): the
//! Workload API never waits on the disk.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use signet_core::audit_chain::{from_hex, link, to_hex, GENESIS};
use tokio::sync::mpsc;

use super::WorkloadRecord;
use crate::telemetry::Metrics;

pub const LOG_FILE: &str = "workload_audit.jsonl";
const QUEUE: usize = 65_536;
const BATCH: usize = 4096;

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

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<WorkloadRecord>,
    head: Arc<Mutex<Head>>,
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

fn write_batch(file: &mut File, head: &mut Head, batch: &[WorkloadRecord]) -> std::io::Result<()> {
    let mut out = String::new();
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
        out.push_str(&serde_json::to_string(&line).unwrap_or_default());
        out.push('\n');
    }
    file.write_all(out.as_bytes())?;
    file.sync_data()?;
    *head = next;
    Ok(())
}

impl AuditLog {
    /// Opens (creating, 0600) the log in `data_dir` and starts its writer.
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let path = data_dir.join(LOG_FILE);
        let head = recover(&path)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        let (tx, mut rx) = mpsc::channel::<WorkloadRecord>(QUEUE);
        let shared = Arc::new(Mutex::new(head));
        let published = shared.clone();
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("workload-audit".into())
            .spawn(move || {
                let mut head = head;
                let mut batch = Vec::with_capacity(BATCH);
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    match write_batch(&mut file, &mut head, &batch) {
                        Ok(()) => {
                            *published.lock().unwrap_or_else(|e| e.into_inner()) = head;
                        }
                        Err(e) => {
                            thread_metrics.audit_dropped.inc_by(batch.len() as u64);
                            tracing::error!(error = %e, records = batch.len(), "workload audit records not written");
                        }
                    }
                    batch.clear();
                }
            })?;
        Ok(Self {
            tx,
            head: shared,
            metrics,
        })
    }

    /// Queues `record`; never waits.
    pub fn record(&self, record: WorkloadRecord) {
        if self.tx.try_send(record).is_err() {
            self.metrics.audit_dropped.inc();
        }
    }

    /// The last record written (and synced).
    pub fn head(&self) -> Head {
        *self.head.lock().unwrap_or_else(|e| e.into_inner())
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
        write_batch(&mut f, &mut head, &[record(1), record(2)]).unwrap();
        // A crash in the middle of the third line.
        f.write_all(b"{\"seq\":3,\"hash\":\"ab").unwrap();
        drop(f);
        assert_eq!(recover(&path).unwrap(), head);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 2, "{text}");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        let mut again = recover(&path).unwrap();
        write_batch(&mut f, &mut again, &[record(3)]).unwrap();
        let summary = super::super::verify::verify(&path, &[]).unwrap();
        assert_eq!((summary.records, summary.last), (3, 3));
    }
}
