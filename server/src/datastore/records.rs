//! What the datastore holds, as the rest of the server sees it.

use signet_core::{RegistrationEntry, Selector, SpiffeId, TrustDomain};

use super::DataStoreError;
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
    /// The issuance's audit record (canonical), chained in the same
    /// transaction: no SVID is handed out unaudited.
    pub audit: Option<String>,
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

/// What `entry update` changes of an entry; `None` leaves it as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryUpdate {
    pub federates_with: Option<Vec<TrustDomain>>,
    pub downstream: Option<bool>,
}

impl EntryUpdate {
    pub fn apply(self, entry: &mut RegistrationEntry) {
        if let Some(tds) = self.federates_with {
            entry.federates_with = tds;
        }
        if let Some(downstream) = self.downstream {
            entry.downstream = downstream;
        }
    }
}

impl EntryFilter {
    pub fn by_parent(parent: &SpiffeId) -> Self {
        Self {
            parent_id: Some(parent.clone()),
            ..Self::default()
        }
    }
}

/// An authority of a server's CA as stored: its private key is that
/// server's key manager's. Every server of an HA group stores its own; the
/// trust bundle is the union of all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityRecord {
    pub kind: AuthorityKind,
    pub id: String,
    /// The server whose CA it is (see [`ServerRecord`]).
    pub server_id: String,
    pub state: AuthorityState,
    pub tainted: bool,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// DER; X.509 authorities only.
    pub certificate: Option<Vec<u8>>,
    /// The JWK (JSON) of a JWT authority's public key, so servers that do
    /// not hold the key can publish it.
    pub public_key: Option<String>,
    /// Concatenated DER of the upstream roots `certificate` (an
    /// intermediate) chains to; the bundle holds them, not the
    /// intermediate. One root under `[upstream_authority.disk]`, the
    /// upstream's bundle under `[upstream_authority.signet]`.
    pub upstream_root: Option<Vec<u8>>,
    /// Concatenated DER of the intermediates between `certificate` and
    /// the roots (a nested upstream's own CA), sent after it with SVIDs.
    pub upstream_chain: Option<Vec<u8>>,
}

impl AuthorityRecord {
    /// Only an authority that signs nothing now may be tainted.
    pub fn check_taint(&self) -> Result<(), DataStoreError> {
        if self.state == AuthorityState::Active {
            return Err(DataStoreError::FailedPrecondition(format!(
                "{} authority {} is active and cannot be tainted; prepare and activate another one first",
                self.kind.as_str(),
                self.id
            )));
        }
        Ok(())
    }

    /// Only a tainted authority that signs nothing now may be revoked.
    pub fn check_revoke(&self) -> Result<(), DataStoreError> {
        if self.state == AuthorityState::Active {
            return Err(DataStoreError::FailedPrecondition(format!(
                "{} authority {} is active and cannot be revoked; activate another one, then taint and revoke this one",
                self.kind.as_str(),
                self.id
            )));
        }
        if !self.tainted {
            return Err(DataStoreError::FailedPrecondition(format!(
                "{} authority {} is not tainted; taint it first",
                self.kind.as_str(),
                self.id
            )));
        }
        Ok(())
    }

    /// The certificates the trust bundle holds for this X.509 authority:
    /// its upstream roots, or itself when self-signed.
    pub fn bundle_certificates(&self) -> Vec<Vec<u8>> {
        match (&self.upstream_root, &self.certificate) {
            // Rows written before roots were lists hold one bare root.
            (Some(roots), _) => {
                signet_core::x509::split_der_certs(roots).unwrap_or_else(|_| vec![roots.clone()])
            }
            (None, Some(cert)) => vec![cert.clone()],
            (None, None) => Vec::new(),
        }
    }
}

/// A digest of the trust bundle the union of `authorities` makes (not of
/// their order, states or owners): when it differs from the stored one the
/// bundle changed and its sequence must increase. Servers joining under one
/// upstream root leave it unchanged.
pub fn bundle_fingerprint(authorities: &[AuthorityRecord]) -> String {
    let mut x509: Vec<Vec<u8>> = authorities
        .iter()
        .filter(|a| a.kind == AuthorityKind::X509)
        .flat_map(AuthorityRecord::bundle_certificates)
        .collect();
    x509.sort_unstable();
    x509.dedup();
    let mut jwt: Vec<(&str, &str)> = authorities
        .iter()
        .filter(|a| a.kind == AuthorityKind::Jwt)
        .map(|a| (a.id.as_str(), a.public_key.as_deref().unwrap_or("")))
        .collect();
    jwt.sort_unstable();
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    let mut put = |tag: &[u8], bytes: &[u8]| {
        h.update(tag);
        h.update(&(bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    for der in x509 {
        put(b"x509", &der);
    }
    for (kid, jwk) in jwt {
        put(b"jwt", kid.as_bytes());
        put(b"jwk", jwk.as_bytes());
    }
    hex::encode(h.finish().as_ref())
}

/// Every server's authorities, in order (each server's as it saved them),
/// the bundle's sequence, and the revision they reflect.
#[derive(Debug, Clone, Default)]
pub struct StoredAuthorities {
    pub authorities: Vec<AuthorityRecord>,
    pub sequence: u64,
    /// The revision of the event log when they were read.
    pub revision: u64,
}

/// Where a save of the authorities left the bundle and the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedAuthorities {
    pub sequence: u64,
    /// The revision of the last event written (the current one if none).
    pub revision: u64,
    /// Every server's authorities after the save: the saver's own as
    /// stored (a taint or revocation made elsewhere meanwhile kept).
    pub authorities: Vec<AuthorityRecord>,
}

/// A server of the trust domain (one, or several sharing a datastore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRecord {
    /// Made once when the server first starts, kept in its data dir.
    pub id: String,
    pub hostname: String,
    /// Its Node API address as it bound it.
    pub address: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds: the last time it said it is alive.
    pub last_seen: i64,
}

/// A CRL one server signed for one of its X.509 authorities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCrl {
    pub authority_id: String,
    pub server_id: String,
    /// DER.
    pub der: Vec<u8>,
}

/// A federated trust domain's bundle as held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedBundleRecord {
    /// Its trust domain, authorities and `spiffe_sequence`.
    pub bundle: signet_core::bundle::Bundle,
    pub source: crate::federation::BundleSource,
    /// Unix seconds: when it was stored.
    pub updated_at: i64,
}

/// Where and how a peer trust domain's bundle is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationshipRecord {
    pub trust_domain: signet_core::TrustDomain,
    pub bundle_endpoint_url: String,
    pub profile: crate::federation::EndpointProfile,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last fetch (0: never), and why it failed ("" if
    /// it did not).
    pub last_fetch_at: i64,
    pub last_error: String,
}

/// Refusal of a bundle older than the one held (a bundle endpoint that went
/// back, or a replay).
pub(super) fn older_bundle(
    stored: &FederatedBundleRecord,
    offered: &FederatedBundleRecord,
) -> DataStoreError {
    DataStoreError::FailedPrecondition(format!(
        "the bundle of {} has spiffe_sequence {}, lower than the {} held",
        offered.bundle.trust_domain, offered.bundle.sequence, stored.bundle.sequence
    ))
}

/// Refusal to delete a bundle a relationship keeps fetching.
pub(super) fn fetched_bundle(td: &signet_core::TrustDomain) -> DataStoreError {
    DataStoreError::FailedPrecondition(format!(
        "the bundle of {td} is fetched by a federation relationship: delete the relationship first"
    ))
}
