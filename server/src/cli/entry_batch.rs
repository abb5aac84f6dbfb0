//! `signet-server entry create --data FILE`: many entries from a JSON file
//! (`-` for stdin), sent with BatchCreateEntry. One output line per entry, in
//! file order: its new id, or `error: ...`; exit 1 if any failed.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde_json::{json, Value};
use signet_core::duration::ConfigDuration;
use signet_proto::admin::admin_client::AdminClient;
use signet_proto::admin::{BatchCreateEntryRequest, CreateEntryResult, Entry};
use tonic::transport::Channel;

use super::entry::entry_json;
use super::{print_json, ttl_secs, Output};
use crate::api::entry_create::MAX_BATCH;

/// `{"entries": [...]}`; field names as in `entry show --output json`.
/// `federates_with` is a list of trust domains.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesFile {
    entries: Vec<FileEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    spiffe_id: String,
    #[serde(default)]
    parent_id: String,
    #[serde(default)]
    selectors: Vec<String>,
    /// `"1h"` like the flags, or seconds as a number.
    x509_svid_ttl: Option<ConfigDuration>,
    jwt_svid_ttl: Option<ConfigDuration>,
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    hint: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    downstream: bool,
    /// A node alias (see `entry create --node`).
    #[serde(default)]
    node: bool,
    /// Trust domains whose bundles the workloads get (`--federates-with`).
    #[serde(default)]
    federates_with: Vec<String>,
}

impl FileEntry {
    fn request(self) -> anyhow::Result<Entry> {
        Ok(Entry {
            x509_svid_ttl: ttl_secs("x509_svid_ttl", self.x509_svid_ttl.map(|d| d.0))?,
            jwt_svid_ttl: ttl_secs("jwt_svid_ttl", self.jwt_svid_ttl.map(|d| d.0))?,
            spiffe_id: self.spiffe_id,
            parent_id: self.parent_id,
            selectors: self.selectors,
            dns_names: self.dns_names,
            hint: self.hint,
            admin: self.admin,
            downstream: self.downstream,
            node: self.node,
            federates_with: self.federates_with,
            ..Default::default()
        })
    }
}

/// The file's entries, each a request or why it cannot be one. A file that
/// is not well-formed is refused whole, before anything is sent.
fn read_entries(path: &Path) -> anyhow::Result<Vec<anyhow::Result<Entry>>> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading entries from stdin")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let file: EntriesFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not an entries file", path.display()))?;
    Ok(file.entries.into_iter().map(FileEntry::request).collect())
}

/// What happened to one entry of the file.
enum Outcome {
    Created(Entry),
    Failed { code: i32, message: String },
}

impl Outcome {
    fn from_result(r: CreateEntryResult) -> Self {
        match r.entry {
            Some(entry) if r.error_code == 0 => Outcome::Created(entry),
            _ => Outcome::Failed {
                code: r.error_code,
                message: r.error_message,
            },
        }
    }

    fn invalid(message: String) -> Self {
        Outcome::Failed {
            code: tonic::Code::InvalidArgument as i32,
            message,
        }
    }

    fn line(&self) -> String {
        match self {
            Outcome::Created(e) => e.id.clone(),
            Outcome::Failed { message, .. } => format!("error: {message}"),
        }
    }

    fn json(&self) -> Value {
        match self {
            Outcome::Created(e) => json!({"status": {"code": 0}, "entry": entry_json(e)}),
            Outcome::Failed { code, message } => {
                json!({"status": {"code": code, "message": message}})
            }
        }
    }
}

/// Sends up to `MAX_BATCH` entries; an RPC failure is every entry's error.
async fn send(client: &mut AdminClient<Channel>, chunk: Vec<Entry>) -> Vec<Outcome> {
    let sent = chunk.len();
    match client
        .batch_create_entry(BatchCreateEntryRequest { entries: chunk })
        .await
    {
        Ok(r) => {
            let mut out: Vec<Outcome> = r
                .into_inner()
                .results
                .into_iter()
                .map(Outcome::from_result)
                .collect();
            out.resize_with(sent, || Outcome::Failed {
                code: tonic::Code::Internal as i32,
                message: "the server sent no result for this entry".into(),
            });
            out
        }
        Err(status) => (0..sent)
            .map(|_| Outcome::Failed {
                code: status.code() as i32,
                message: status.message().to_owned(),
            })
            .collect(),
    }
}

pub async fn create(
    path: &Path,
    mut client: AdminClient<Channel>,
    output: Output,
) -> anyhow::Result<()> {
    let entries = read_entries(path)?;
    let total = entries.len();
    let mut all = Vec::with_capacity(total);
    let mut pending = entries.into_iter().peekable();
    while pending.peek().is_some() {
        // File order is kept: entries the CLI refuses take their place
        // between the server's answers.
        let mut slots = Vec::new();
        let mut chunk = Vec::new();
        while chunk.len() < MAX_BATCH {
            let Some(next) = pending.next() else { break };
            match next {
                Ok(req) => {
                    if let Some(w) =
                        super::entry::binary_only_warning(&req.spiffe_id, &req.selectors)
                    {
                        eprintln!("{w}");
                    }
                    chunk.push(req);
                    slots.push(None);
                }
                Err(e) => slots.push(Some(Outcome::invalid(format!("{e:#}")))),
            }
        }
        let mut answers = send(&mut client, chunk).await.into_iter();
        for slot in slots {
            let outcome = match slot {
                Some(refused) => refused,
                None => answers.next().unwrap_or_else(|| Outcome::Failed {
                    code: tonic::Code::Internal as i32,
                    message: "the server sent no result for this entry".into(),
                }),
            };
            if output == Output::Text {
                println!("{}", outcome.line());
            }
            all.push(outcome);
        }
    }
    if output == Output::Json {
        print_json(&json!({"results": all.iter().map(Outcome::json).collect::<Vec<_>>()}))?;
    }
    let failed = all
        .iter()
        .filter(|o| matches!(o, Outcome::Failed { .. }))
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} of {total} entries failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_entries_become_requests_with_ttls_in_seconds() {
        let file: EntriesFile = serde_json::from_str(
            r#"{"entries": [
                {"spiffe_id": "spiffe://example.org/w", "parent_id": "spiffe://example.org/a",
                 "selectors": ["unix:uid:1000"], "x509_svid_ttl": "1h", "jwt_svid_ttl": 300,
                 "dns_names": ["w.local"], "hint": "h"},
                {"spiffe_id": "spiffe://example.org/edge", "selectors": ["x509pop:subject:cn:e"],
                 "node": true},
                {"spiffe_id": "spiffe://example.org/x", "x509_svid_ttl": 0}
            ]}"#,
        )
        .unwrap();
        let reqs: Vec<_> = file.entries.into_iter().map(FileEntry::request).collect();
        let first = reqs[0].as_ref().unwrap();
        assert_eq!(
            (first.x509_svid_ttl, first.jwt_svid_ttl, first.hint.as_str()),
            (3600, 300, "h")
        );
        let alias = reqs[1].as_ref().unwrap();
        assert!(alias.node && alias.parent_id.is_empty() && alias.x509_svid_ttl == 0);
        let err = reqs[2].as_ref().unwrap_err().to_string();
        assert_eq!(err, "x509_svid_ttl must be longer than zero");
    }

    #[test]
    fn unknown_fields_and_bad_durations_refuse_the_whole_file() {
        let parse = |text: &str| serde_json::from_str::<EntriesFile>(text).unwrap_err();
        let err = parse(r#"{"entries": [{"spiffe_id": "spiffe://example.org/w", "ttl": 1}]}"#);
        assert!(err.to_string().contains("unknown field `ttl`"), "{err}");
        let err = parse(r#"{"entries": [{"spiffe_id": "s", "x509_svid_ttl": "1y"}]}"#);
        assert!(err.to_string().contains("invalid duration \"1y\""), "{err}");
    }
}
