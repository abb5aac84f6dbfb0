//! What a peer may hold open on one of our listeners. Every accepted
//! connection needs a [`Permit`] from a [`ConnectionTracker`] (a cap per
//! peer, a uid or an address, and one in all, sized below the descriptor
//! limit), and is served as a [`Guarded`] stream that closes it when no
//! request came within `first_request` of the accept, or when no request
//! has been open for `idle`. [`ActivityLayer`] tells the stream which
//! requests are open; [`accepted`] accepts without spinning when the
//! descriptor table is full.

mod accept;
mod activity;
mod guarded;
mod tracker;

use std::time::Duration;

pub use accept::{accepted, Listener};
pub use activity::{Activity, ActivityLayer, ActivityService, GuardedBody, RequestGuard};
pub use guarded::{ConnInfo, Guarded};
pub use tracker::{ConnectionTracker, Permit, Refusal};

/// When an open connection is closed for doing nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the accept (or the end of the TLS handshake) to the first request.
    pub first_request: Duration,
    /// With no request open, after the last one ended.
    pub idle: Duration,
}

/// The defaults of both daemons.
pub const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            first_request: DEFAULT_FIRST_REQUEST_TIMEOUT,
            idle: DEFAULT_IDLE_TIMEOUT,
        }
    }
}
