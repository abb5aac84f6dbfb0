//! What the datastore holds, as the rest of the server sees it.

use signet_core::{RegistrationEntry, Selector, SpiffeId};

use crate::ca::{AuthorityKind, AuthorityState};

/// An attested agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub spiffe_id: SpiffeId,
    /// The node attestor that vouched for it, e.g. `join_token`.
    pub attestation_type: String,
    /// Hex serial of the agent's current SVID.
    pub serial: String,
    /// Unix seconds; when the current SVID expires.
    pub expires_at: i64,
    pub banned: bool,
    pub attested_at: i64,
    pub selectors: Vec<Selector>,
}

/// A registration entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRecord {
    pub entry: RegistrationEntry,
    /// Unix seconds.
    pub created_at: i64,
    /// A node-alias entry (see `crate::alias`).
    pub node: bool,
}

/// One entry of a batch create: a workload entry or a node alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub entry: RegistrationEntry,
    pub node: bool,
}

/// Which kind of credential a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedKind {
    X509,
    Jwt,
}

impl RevokedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokedKind::X509 => "x509",
            RevokedKind::Jwt => "jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "x509" => Some(RevokedKind::X509),
            "jwt" => Some(RevokedKind::Jwt),
            _ => None,
        }
    }
}

/// An issued X.509-SVID as recorded for revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedX509 {
    /// Lowercase hex.
    pub serial: String,
    pub spiffe_id: SpiffeId,
    pub authority_id: String,
    pub expires_at: i64,
}

/// A revoked credential, kept until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub kind: RevokedKind,
    /// Lowercase hex serial (X.509) or jti (JWT).
    pub id: String,
    /// The X.509 authority id or JWT kid that signed it.
    pub authority_id: String,
    pub reason: String,
    /// Unix seconds.
    pub revoked_at: i64,
    pub expires_at: i64,
}

/// Every set field must match; selectors: entries holding all of them.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub spiffe_id: Option<SpiffeId>,
    pub parent_id: Option<SpiffeId>,
    pub selectors: Vec<Selector>,
    /// `Some(true)`: node aliases only; `Some(false)`: workload entries only.
    pub node: Option<bool>,
}

impl EntryFilter {
    pub fn by_parent(parent: &SpiffeId) -> Self {
        Self {
            parent_id: Some(parent.clone()),
            ..Self::default()
        }
    }
}

/// An authority of the CA as stored: its private key is the key manager's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityRecord {
    pub kind: AuthorityKind,
    pub id: String,
    pub state: AuthorityState,
    pub tainted: bool,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// DER; X.509 authorities only.
    pub certificate: Option<Vec<u8>>,
}

/// The stored authorities, in order, and the bundle's sequence.
#[derive(Debug, Clone, Default)]
pub struct StoredAuthorities {
    pub authorities: Vec<AuthorityRecord>,
    pub sequence: u64,
}

/// Where a save of the authorities left the bundle and the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedAuthorities {
    pub sequence: u64,
    /// The revision of the last event written (the current one if none).
    pub revision: u64,
}
