//! Upstream authorities: what signs each new X.509 CA of this server when
//! it is not self-signed. `disk` holds a root and its key here and signs in
//! process; `signet` asks an upstream Signet server to sign a CSR.

pub mod disk;
pub(super) mod roots;
pub mod signet;
mod signet_client;

use std::sync::Arc;

pub use disk::{UpstreamCa, UpstreamDisk};
pub use signet::{SignetUpstream, UpstreamSignet};

/// `[upstream_authority.*]` as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSettings {
    Disk(UpstreamDisk),
    Signet(UpstreamSignet),
}

/// The upstream authority, ready to sign.
#[derive(Debug, Clone)]
pub enum Upstream {
    Disk(Arc<UpstreamCa>),
    Signet(Arc<SignetUpstream>),
}

/// A CA certificate an upstream signed, and what it chains to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCa {
    /// DER: the new CA, then the intermediates above it, without roots.
    pub chain: Vec<Vec<u8>>,
    /// DER: the upstream's X.509 roots, the bundle of this trust domain.
    pub roots: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests;
