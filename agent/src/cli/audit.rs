//! `signet-agent audit verify [--data-dir D] [--checkpoints FILE]`: the
//! agent's Workload API log recomputed, and compared with the checkpoints
//! the server recorded for this agent (`signet-server audit show --kind
//! agent_audit_checkpoint --agent ID --output json` saved to FILE).
//! Exit 0 and a summary when intact; exit 1 naming the first problem.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::audit::verify::{server_checkpoints, verify};
use crate::config::DEFAULT_DATA_DIR;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The agent's data dir (where workload_audit.jsonl is).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The server's agent_audit_checkpoint records for this agent.
    #[arg(long)]
    pub checkpoints: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

pub fn run(a: &VerifyArgs) -> ExitCode {
    let checkpoints = match &a.checkpoints {
        None => Ok(vec![]),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|text| {
                server_checkpoints(&text).map_err(|e| format!("{}: {e}", path.display()))
            }),
    };
    let outcome = checkpoints.and_then(|c| verify(&crate::audit::log_path(&a.data_dir), &c));
    match (a.output, &outcome) {
        (Output::Json, Ok(s)) => println!(
            "{}",
            json!({"intact": true, "records": s.records, "last": s.last, "head": s.head, "checkpoints": s.checkpoints, "error": null})
        ),
        (Output::Json, Err(e)) => println!("{}", json!({"intact": false, "error": e})),
        (Output::Text, Ok(s)) => println!(
            "workload audit log intact: {} records (1..{}), head {}, {} server checkpoints match",
            s.records, s.last, s.head, s.checkpoints
        ),
        (Output::Text, Err(e)) => println!("workload audit log broken: {e}"),
    }
    if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
