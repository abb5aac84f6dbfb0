//! One module per figure group; each measures the system and, in the same
//! run, the raw cost it is divided by.

pub mod agent_rss;
pub mod authz;
pub mod cold_start_ban;
pub mod federation;
pub mod fetch;
pub mod ha_failover;
pub mod issue;
pub mod jwt;
pub mod pg;
pub mod pkcs11;
pub mod propagation;
pub mod server_sync;

use std::path::PathBuf;
use std::time::Duration;

use crate::env::{Agent, Server};

/// What the figures share: the running pair and how long to measure.
pub struct Ctx {
    pub server: Server,
    pub agent: Agent,
    pub dir: PathBuf,
    pub quick: bool,
    /// The SPIFFE ID every workload of this process is issued.
    pub workload_id: String,
    pub selector: String,
}

impl Ctx {
    /// How long a throughput is measured.
    pub fn window(&self) -> Duration {
        if self.quick {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(10)
        }
    }
}
