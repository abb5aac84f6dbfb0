//! Forwarding the chain to where a SIEM reads it: syslog (RFC 5424, over
//! a Unix datagram socket or UDP) and a JSON-lines file that rotates by
//! size. Each server forwards the records it wrote (the servers of a group
//! together forward the whole chain, none twice), in chain order, as the
//! datastore has them committed. The last record forwarded is kept in the
//! data dir (`audit_forwarded`), so a restart resumes where it stopped: at
//! worst the batch in flight at a crash is sent again, never skipped.

mod file;
mod syslog;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{json_line, AuditRecord, StoredRecord};
use crate::datastore::DataStore;
pub use file::{JsonFile, JsonFileSettings};
pub use syslog::{Syslog, SyslogTarget};

/// The position file in the data dir.
pub const POSITION_FILE: &str = "audit_forwarded";
const POLL: Duration = Duration::from_secs(1);
const PAGE: usize = 1000;

/// Where records go; either may be unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardSettings {
    pub syslog: Option<SyslogTarget>,
    pub json_file: Option<JsonFileSettings>,
}

impl ForwardSettings {
    pub fn is_off(&self) -> bool {
        self.syslog.is_none() && self.json_file.is_none()
    }
}

fn read_position(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Forwards until `stop`; logs (throttled by the retry pace) what fails and
/// tries again from the same record.
pub async fn run(
    ds: Arc<dyn DataStore>,
    server_id: String,
    settings: ForwardSettings,
    data_dir: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let position = data_dir.join(POSITION_FILE);
    let mut next = match read_position(&position) {
        Some(seq) => seq + 1,
        // First start: from now on, not the history.
        None => match ds.audit_head().await {
            Ok(head) => head.map_or(1, |h| h.seq + 1),
            Err(e) => {
                tracing::error!(error = %e, "audit forwarding cannot read the chain's head; not forwarding");
                return;
            }
        },
    };
    let mut syslog = match &settings.syslog {
        None => None,
        Some(target) => match Syslog::connect(target.clone()).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(target = %target, error = %e, "audit forwarding to syslog cannot start");
                None
            }
        },
    };
    let file = settings.json_file.clone().map(JsonFile::new);
    tracing::info!(from = next, syslog = ?settings.syslog, json_file = ?settings.json_file.as_ref().map(|f| &f.path), "forwarding audit records");
    loop {
        let page = match ds.audit_records(next, PAGE).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "audit forwarding cannot read the chain; retrying");
                vec![]
            }
        };
        let ours: Vec<(&StoredRecord, AuditRecord)> = page
            .iter()
            .filter_map(|r| Some((r, AuditRecord::parse(&r.record).ok()?)))
            .filter(|(_, a)| a.server_id == server_id)
            .collect();
        let mut sent = true;
        if let Some(s) = syslog.as_mut() {
            for (r, a) in &ours {
                if let Err(e) = s.send(a, &json_line(r)).await {
                    tracing::warn!(error = %e, seq = r.seq, "audit record not sent to syslog; retrying");
                    sent = false;
                    break;
                }
            }
        }
        if sent && !ours.is_empty() {
            if let Some(f) = &file {
                let lines: Vec<String> = ours.iter().map(|(r, _)| json_line(r)).collect();
                if let Err(e) = f.append(lines).await {
                    tracing::warn!(error = %e, "audit records not written to the JSON-lines file; retrying");
                    sent = false;
                }
            }
        }
        if sent {
            if let Some(last) = page.last() {
                next = last.seq + 1;
                let text = format!("{}\n", last.seq);
                let path = position.clone();
                let saved = tokio::task::spawn_blocking(move || {
                    signet_runtime::fs::write_atomic(&path, text.as_bytes(), 0o600)
                })
                .await;
                if !matches!(saved, Ok(Ok(()))) {
                    tracing::warn!(path = %position.display(), "the audit forwarding position was not saved");
                }
            }
        }
        if page.len() < PAGE || !sent {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}
