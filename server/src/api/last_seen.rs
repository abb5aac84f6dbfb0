//! When each agent last called this server (the dashboard's "last seen"):
//! in memory, per server, set by every authenticated Node API call.

use std::collections::HashMap;
use std::sync::Mutex;

use signet_core::SpiffeId;

/// Agents remembered at most; beyond it the memory starts again.
const MAX_AGENTS: usize = 1_000_000;

#[derive(Debug, Default)]
pub struct LastSeen {
    at: Mutex<HashMap<SpiffeId, i64>>,
}

impl LastSeen {
    pub fn saw(&self, agent: &SpiffeId, now: i64) {
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        if at.len() >= MAX_AGENTS && !at.contains_key(agent) {
            at.clear();
        }
        at.insert(agent.clone(), now);
    }

    /// Unix seconds of its last call here, if any since this server started.
    pub fn get(&self, agent: &SpiffeId) -> Option<i64> {
        self.at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(agent)
            .copied()
    }
}
