//! What a scenario asks of a system under test, Signet's or SPIRE's: the
//! same calls, so one scenario's code drives both.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

/// Matches no workload: a cold-started agent holds these SVIDs without
/// serving them.
pub const UNSERVED_SELECTOR: (&str, &str) = ("unix", "uid:4294967293");

/// Agents cold-started on fresh data dirs until each holds its SVIDs.
pub struct ColdStart {
    /// From the first spawn until the last agent held all of its SVIDs.
    pub took: Duration,
    /// Each agent's resident memory once it held them, MB.
    pub rss_mb: Vec<f64>,
}

pub trait System {
    /// `signet` or `spire`, as figure names carry it.
    fn name(&self) -> &'static str;
    /// The Workload API socket of the system's agent.
    fn socket(&self) -> &Path;
    /// The SPIFFE ID the bench process's workloads are issued.
    fn workload_id(&self) -> &str;
    /// `spiffe://<td><path>`.
    fn spiffe_id(&self, path: &str) -> String;
    /// An entry for this process's workloads under the system's agent; its
    /// id.
    async fn create_entry(&self, spiffe_id: &str) -> anyhow::Result<String>;
    async fn delete_entry(&self, id: &str) -> anyhow::Result<()>;
    /// `agents` new agents, `per_agent` entries each (made before they
    /// start, not timed), spawned at once on fresh data dirs under `dir`.
    async fn cold_start(
        &self,
        dir: &Path,
        agents: usize,
        per_agent: usize,
    ) -> anyhow::Result<ColdStart>;
}

/// How long a cold start may take before it counts as failed.
pub const COLD_START_PATIENCE: Duration = Duration::from_secs(300);

/// A cold-started agent, as the wait below polls it.
pub trait HoldsSvids {
    /// How many X509-SVIDs it reports holding (its own metric).
    async fn svids_held(&self) -> anyhow::Result<f64>;
}

/// Polls every agent until each holds `per_agent` SVIDs; on running out of
/// `COLD_START_PATIENCE` since `started`, the agents still short.
pub async fn until_all_hold<A: HoldsSvids>(
    agents: &[A],
    per_agent: usize,
    started: Instant,
) -> Result<(), Vec<&A>> {
    let mut pending: Vec<&A> = agents.iter().collect();
    while !pending.is_empty() {
        if started.elapsed() > COLD_START_PATIENCE {
            return Err(pending);
        }
        let mut still = Vec::with_capacity(pending.len());
        for agent in pending {
            if agent.svids_held().await.unwrap_or(0.0) < per_agent as f64 {
                still.push(agent);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}
