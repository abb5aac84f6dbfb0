//! What the agent's `/ready` and `/metrics` answer. Ready means the agent
//! holds a valid agent SVID, has reached the server at least once and has not
//! been cut off (banned or evicted).

use std::sync::{Arc, OnceLock};

use signet_core::Clock;
use signet_runtime::probes::Probes;
use tokio::sync::watch;

use super::Metrics;
use crate::attest::AgentSvid;
use crate::health::Health;

/// What `/ready` looks at.
#[derive(Clone)]
pub struct Readiness {
    health: Health,
    clock: Arc<dyn Clock>,
    agent_svid: Arc<OnceLock<watch::Receiver<Arc<AgentSvid>>>>,
}

impl Readiness {
    pub fn new(health: Health, clock: Arc<dyn Clock>) -> Self {
        Self {
            health,
            clock,
            agent_svid: Arc::default(),
        }
    }

    /// Called once the agent has an identity.
    pub fn set_agent_svid(&self, svid: watch::Receiver<Arc<AgentSvid>>) {
        let _ = self.agent_svid.set(svid);
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), String> {
        let valid = self
            .agent_svid
            .get()
            .is_some_and(|rx| rx.borrow().x509.not_after > self.clock.now());
        if !valid {
            return Err("no valid agent SVID".into());
        }
        if !self.health.reached_server() {
            return Err("the server has not been reached yet".into());
        }
        let report = self.health.report();
        if report.is_cut_off() {
            return Err(report.message);
        }
        Ok(())
    }
}

/// The agent's answers on the probes endpoint.
pub struct AgentProbes {
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
}

impl Probes for AgentProbes {
    async fn ready(&self) -> Result<(), String> {
        self.readiness.check()
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

#[cfg(test)]
mod tests;
