//! `signet-server audit verify | show`: read the audit chain straight from
//! the datastore (the server may be stopped; on SQLite it may be running,
//! readers do not block it). `verify` recomputes every hash and compares
//! the chain with the checkpoints kept in the datastore and, with
//! `--checkpoints FILE`, with those kept outside it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use super::{duration_arg, print_json, print_list, rfc3339, Output, OutputArgs, RunArgs};
use crate::audit::{chain, AuditRecord, Checkpoint, StoredRecord, Verifier};
use crate::datastore::DataStore;
use signet_core::Clock;

/// Records read per datastore round trip.
const PAGE: usize = 10_000;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recomputes the chain: exit 0 and a summary when intact, else exit 1
    /// naming the first record altered, removed, inserted or reordered.
    Verify(VerifyArgs),
    /// Prints the records, oldest first, filtered.
    Show(ShowArgs),
    /// The last records as JSON lines; with --follow, then every new one
    /// as it is committed (for a SIEM).
    Tail(TailArgs),
}

/// Where the datastore is: as `signet-server run` finds it.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The server's TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://USER@HOST[:PORT]/DB.
    #[arg(long, value_name = "URL")]
    datastore: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Start at this record (trusting the stored hash of the one before).
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Checkpoints kept outside the datastore: one JSON object per line.
    #[arg(long, value_name = "FILE")]
    checkpoints: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Records at or after TIME: RFC 3339 (2026-01-02T03:04:05Z) or a
    /// duration back from now (15m, 24h).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Records about this SPIFFE ID.
    #[arg(long)]
    spiffe_id: Option<String>,
    /// Records about this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Records of this kind (node_attestation, agent_renewal,
    /// x509_svid_issued, jwt_svid_issued, admin).
    #[arg(long)]
    kind: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// How many of the last records first.
    #[arg(long, short = 'n', default_value_t = 10)]
    lines: u64,
    /// Keep printing records as they are appended.
    #[arg(long, short = 'f')]
    follow: bool,
}

impl StoreArgs {
    async fn open(&self) -> anyhow::Result<std::sync::Arc<dyn DataStore>> {
        let run = RunArgs {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            datastore: self.datastore.clone(),
            trust_domain: None,
            bind: None,
            admin_socket: None,
            ca_ttl: None,
            default_x509_svid_ttl: None,
            default_jwt_svid_ttl: None,
            join_token_ttl: None,
            not_before_backdate: None,
            log_json: false,
            telemetry_bind: None,
        };
        let config = run.runtime_config()?;
        let url = config.datastore_url();
        crate::datastore::open(&url, &config.postgres)
            .await
            .with_context(|| format!("opening the datastore {url}"))
    }
}

impl AuditCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            AuditCommand::Verify(a) => verify(a).await,
            AuditCommand::Show(a) => show(a).await,
            AuditCommand::Tail(a) => tail(a).await,
        }
    }
}

/// Reads the checkpoints of a JSON-lines file.
fn read_checkpoints(path: &PathBuf) -> anyhow::Result<Vec<Checkpoint>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a checkpoint", path.display(), i + 1))
        })
        .collect()
}

/// Whether `c`'s signature is its key's over its contents.
fn signature_ok(c: &Checkpoint) -> bool {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(key), Ok(sig)) = (b64.decode(&c.public_key), b64.decode(&c.signature)) else {
        return false;
    };
    let key_id = hex::encode(ring::digest::digest(&ring::digest::SHA256, &key));
    key_id == c.key_id
        && ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key)
            .verify(
                &Checkpoint::message(c.seq, &c.hash, c.time_ms, &c.server_id),
                &sig,
            )
            .is_ok()
}

async fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let ds = a.store.open().await?;
    let mut checkpoints: Vec<(String, Checkpoint)> = ds
        .audit_checkpoints()
        .await?
        .into_iter()
        .map(|c| (format!("seq {} (datastore)", c.seq), c))
        .collect();
    if let Some(path) = &a.checkpoints {
        checkpoints.extend(read_checkpoints(path)?.into_iter().map(|c| {
            let name = format!("seq {} ({})", c.seq, path.display());
            (name, c)
        }));
    }
    // After retention pruned the oldest records, the first one left is a
    // checkpointed record: its signed hash anchors the rest.
    let first = ds.audit_records(1, 1).await?.into_iter().next();
    let pruned_to = first.as_ref().filter(|r| r.seq > 1 && a.from <= r.seq);
    let (from, anchor) = match pruned_to {
        Some(r) => {
            let Some(c) = checkpoints
                .iter()
                .map(|(_, c)| c)
                .find(|c| c.seq == r.seq && signature_ok(c))
            else {
                anyhow::bail!(
                    "records 1 to {} are missing and no signed checkpoint names record {}: they were removed, not pruned",
                    r.seq - 1,
                    r.seq
                );
            };
            if c.hash != r.hash {
                anyhow::bail!(
                    "record {} (the first after pruning) does not match its checkpoint: the datastore was rewritten",
                    r.seq
                );
            }
            (
                r.seq + 1,
                (r.seq, chain::from_hex(&c.hash).unwrap_or_default()),
            )
        }
        None if a.from <= 1 => (1, (0, chain::GENESIS)),
        None => {
            let from = a.from;
            let before = ds.audit_records(from - 1, 1).await?;
            match before.first() {
                Some(r) if r.seq == from - 1 => {
                    (from, (r.seq, chain::from_hex(&r.hash).unwrap_or_default()))
                }
                _ => anyhow::bail!("there is no record {} to start after", from - 1),
            }
        }
    };
    // Checkpoints of pruned records cannot be compared (their signatures are).
    let mut v = Verifier::new(
        anchor.0,
        anchor.1,
        checkpoints
            .iter()
            .map(|(_, c)| c.seq)
            .filter(|seq| *seq > anchor.0),
    );
    let outcome = walk(ds.as_ref(), from, &mut v).await?.and_then(|()| {
        for (name, c) in &checkpoints {
            if !signature_ok(c) {
                return Err(format!("checkpoint {name} has a bad signature"));
            }
        }
        let parsed: Vec<(&str, u64, [u8; 32])> = checkpoints
            .iter()
            .filter(|(_, c)| c.seq > anchor.0)
            .filter_map(|(n, c)| Some((n.as_str(), c.seq, chain::from_hex(&c.hash)?)))
            .collect();
        v.against(parsed).map_err(|b| b.to_string())
    });
    let (last, head) = v.head();
    match (a.output.output, &outcome) {
        (Output::Json, _) => print_json(&json!({
            "intact": outcome.is_ok(),
            "error": outcome.as_ref().err(),
            "records_checked": v.checked,
            "first": from,
            "last": last,
            "head_hash": chain::to_hex(&head),
            "checkpoints": checkpoints.len(),
        }))?,
        (Output::Text, Ok(())) => println!(
            "audit chain intact: {} records checked ({from}..{last}), head {}, {} checkpoints match",
            v.checked,
            chain::to_hex(&head),
            checkpoints.len()
        ),
        (Output::Text, Err(e)) => println!("audit chain broken: {e}"),
    }
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Feeds every record from `from` on; the first break as text.
async fn walk(
    ds: &dyn DataStore,
    from: u64,
    v: &mut Verifier,
) -> anyhow::Result<Result<(), String>> {
    let mut next = from;
    loop {
        let page = ds.audit_records(next, PAGE).await?;
        let Some(last) = page.last().map(|r| r.seq) else {
            return Ok(Ok(()));
        };
        for r in &page {
            if let Err(b) = v.feed(r) {
                return Ok(Err(b.to_string()));
            }
        }
        next = last + 1;
    }
}

async fn show(a: ShowArgs) -> anyhow::Result<ExitCode> {
    let since_ms = match &a.since {
        None => None,
        Some(s) => Some(match signet_runtime::time::parse_rfc3339(s) {
            Some(secs) => secs.saturating_mul(1000),
            None => {
                let back = duration_arg(s).map_err(|e| {
                    anyhow::anyhow!("--since {s:?}: neither RFC 3339 nor a duration ({e})")
                })?;
                let now = signet_core::SystemClock
                    .now()
                    .checked_sub(back)
                    .unwrap_or(std::time::UNIX_EPOCH);
                signet_core::clock::unix_seconds(now).saturating_mul(1000)
            }
        }),
    };
    let ds = a.store.open().await?;
    let mut shown: Vec<(StoredRecord, AuditRecord)> = Vec::new();
    let mut next = 1;
    loop {
        let page = ds.audit_records(next, PAGE).await?;
        let Some(last) = page.last().map(|r| r.seq) else {
            break;
        };
        for r in page {
            // A record that does not parse is shown by `verify`, not here.
            let Ok(rec) = AuditRecord::parse(&r.record) else {
                continue;
            };
            let keep = since_ms.is_none_or(|t| rec.time_ms >= t)
                && a.kind.as_deref().is_none_or(|k| rec.decision.kind() == k)
                && a.spiffe_id
                    .as_deref()
                    .is_none_or(|id| rec.decision.spiffe_ids().contains(&id))
                && a.agent
                    .as_deref()
                    .is_none_or(|id| rec.decision.agent() == Some(id));
            if keep {
                shown.push((r, rec));
            }
        }
        next = last + 1;
    }
    print_list(
        a.output.output,
        "records",
        ("audit record", "audit records"),
        &shown,
        |(r, rec)| {
            let mut v = serde_json::to_value(rec).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("seq".into(), json!(r.seq));
                o.insert("hash".into(), json!(r.hash));
            }
            v
        },
        |(r, rec)| {
            format!(
                "{:>8} {} {} {}\n",
                r.seq,
                rfc3339(rec.time_ms.div_euclid(1000)),
                rec.decision.kind(),
                r.record
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// How often `--follow` looks for new records.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(500);

async fn tail(a: TailArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let ds = a.store.open().await?;
    let head = ds.audit_head().await?.map_or(0, |h| h.seq);
    let mut next = head.saturating_sub(a.lines) + 1;
    loop {
        let page = ds.audit_records(next, PAGE).await?;
        let mut out = std::io::stdout().lock();
        for r in &page {
            writeln!(out, "{}", crate::audit::json_line(r))?;
            next = r.seq + 1;
        }
        out.flush()?;
        drop(out);
        if !a.follow {
            return Ok(ExitCode::SUCCESS);
        }
        if page.len() < PAGE {
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}
