//! `signet-agent audit verify`: recomputes the local chain and compares it
//! with the checkpoints the server recorded for this agent.

use std::path::Path;

use signet_core::audit_chain::{from_hex, to_hex, StoredRecord, Verifier, GENESIS};

use super::log::read_lines;

/// What an intact log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub last: u64,
    pub head: String,
    pub checkpoints: usize,
}

/// `(seq, hash)` of each `agent_audit_checkpoint` record in `text`: the
/// `{"records": [...]}` document of `signet-server audit show --output
/// json`, or the JSON lines of `audit tail`.
pub fn server_checkpoints(text: &str) -> Result<Vec<(u64, [u8; 32])>, String> {
    let records: Vec<serde_json::Value> = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(doc) => doc["records"]
            .as_array()
            .cloned()
            .ok_or("a JSON document without \"records\"")?,
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON lines: {e}")))
            .collect::<Result<_, _>>()?,
    };
    Ok(records
        .iter()
        .filter(|r| r["kind"] == "agent_audit_checkpoint")
        .filter_map(|r| Some((r["log_seq"].as_u64()?, from_hex(r["log_hash"].as_str()?)?)))
        .collect())
}

/// The log at `path` against `checkpoints`: its summary, or the first
/// thing wrong with it.
pub fn verify(path: &Path, checkpoints: &[(u64, [u8; 32])]) -> Result<Summary, String> {
    let lines = read_lines(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v = Verifier::new(0, GENESIS, checkpoints.iter().map(|(s, _)| *s));
    for (i, line) in lines.into_iter().enumerate() {
        let line = line.map_err(|e| format!("line {}: not a record: {e}", i + 1))?;
        v.feed(&StoredRecord {
            seq: line.seq,
            record: line.record,
            hash: line.hash,
        })
        .map_err(|b| b.to_string())?;
    }
    let names: Vec<String> = checkpoints
        .iter()
        .map(|(s, _)| format!("seq {s} (server)"))
        .collect();
    v.against(
        checkpoints
            .iter()
            .zip(&names)
            .map(|((s, h), n)| (n.as_str(), *s, *h)),
    )
    .map_err(|b| b.to_string())?;
    let (last, head) = v.head();
    Ok(Summary {
        records: v.checked,
        last,
        head: to_hex(&head),
        checkpoints: checkpoints.len(),
    })
}
