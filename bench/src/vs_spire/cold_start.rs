//! Agents cold-started on fresh data dirs, timed from spawn until each
//! holds the SVIDs of all its entries (Signet's `/metrics`
//! `signet_agent_svids_held`, SPIRE's `spire_agent_lru_cache_svid_map_size`):
//! - `vs_spire_sync_10k`: one agent, 10,000 entries (ms);
//! - `vs_spire_agent_rss_1k`, `_10k`: that agent's resident memory once it
//!   holds them (MB);
//! - `vs_spire_issue_per_s`: 8 agents at once, `ISSUE_PER_AGENT` entries
//!   each: SVIDs signed per second by the server.

use std::path::Path;

use super::system::{ColdStart, System};

pub const ISSUE_AGENTS: usize = 8;

pub fn issue_per_agent(quick: bool) -> usize {
    if quick {
        250
    } else {
        1_000
    }
}

pub async fn one_agent<S: System>(
    system: &S,
    dir: &Path,
    entries: usize,
) -> anyhow::Result<ColdStart> {
    system
        .cold_start(
            &dir.join(format!("{}-{entries}", system.name())),
            1,
            entries,
        )
        .await
}

/// X509-SVIDs per second for `ISSUE_AGENTS` agents starting at once.
pub async fn issue_rate<S: System>(system: &S, dir: &Path, quick: bool) -> anyhow::Result<f64> {
    let per_agent = issue_per_agent(quick);
    let done = system
        .cold_start(
            &dir.join(format!("{}-issue", system.name())),
            ISSUE_AGENTS,
            per_agent,
        )
        .await?;
    Ok((ISSUE_AGENTS * per_agent) as f64 / done.took.as_secs_f64())
}
