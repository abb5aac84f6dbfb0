//! Where the server keeps join tokens, agents and registration entries.
//! One backend-neutral trait; `sqlite` implements it now, PostgreSQL later.

mod sqlite;

use async_trait::async_trait;
use futures::stream::BoxStream;
use signet_core::{RegistrationEntry, Selector, SpiffeId, TrustDomain};

pub use sqlite::SqliteDataStore;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataStoreError {
    #[error("join token does not exist or has already been used")]
    JoinTokenNotFound,
    #[error("join token expired")]
    JoinTokenExpired,
    #[error("agent is banned")]
    AgentBanned,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("datastore error: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, DataStoreError>;

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

#[async_trait]
pub trait DataStore: Send + Sync + 'static {
    /// Records a single-use join token, by the SHA-256 (lowercase hex) of
    /// the token, valid until `expires_at` (unix seconds). The token itself
    /// is never stored.
    async fn create_join_token(&self, token_sha256: &str, expires_at: i64) -> Result<()>;

    /// The stored hash and expiry of an unused join token, read only (the
    /// check before anything is signed; the burn below is what counts).
    async fn join_token(&self, token_sha256: &str) -> Result<Option<(String, i64)>>;

    /// Burns the token and records `agent` in one transaction. Refuses an
    /// unknown or used token, an expired one (`now` unix seconds, left in place
    /// so a retry says "expired" again) and an agent ID that is banned.
    async fn attest_with_join_token(
        &self,
        token_sha256: &str,
        now: i64,
        agent: AgentRecord,
    ) -> Result<AgentRecord>;

    /// Records `agent` (attested by a method without tokens), replacing an
    /// earlier or evicted record of the same ID; refuses a banned ID.
    async fn attest_agent(&self, agent: AgentRecord) -> Result<AgentRecord>;

    async fn get_agent(&self, id: &SpiffeId) -> Result<Option<AgentRecord>>;
    async fn list_agents(&self) -> Result<Vec<AgentRecord>>;
    /// Records the serial and expiry of a renewed agent SVID.
    async fn update_agent_svid(&self, id: &SpiffeId, serial: &str, expires_at: i64) -> Result<()>;
    /// Deletes the agent; it must attest again.
    async fn evict_agent(&self, id: &SpiffeId) -> Result<AgentRecord>;
    /// Marks the agent banned; the record stays so it cannot come back.
    async fn ban_agent(&self, id: &SpiffeId) -> Result<AgentRecord>;

    /// Stores `entry` under its id; the store assigns the revision.
    async fn create_entry(&self, entry: RegistrationEntry, created_at: i64) -> Result<EntryRecord>;
    /// Stores a node-alias entry (parent: the server's ID, see `crate::alias`).
    async fn create_node_alias(
        &self,
        entry: RegistrationEntry,
        created_at: i64,
    ) -> Result<EntryRecord>;
    /// Stores `entries` in one transaction, each with its own revision; one
    /// refused entry (`AlreadyExists`) does not stop the others. The outer
    /// error means nothing was stored.
    async fn create_entries(
        &self,
        entries: Vec<NewEntry>,
        created_at: i64,
    ) -> Result<Vec<Result<EntryRecord>>>;
    async fn get_entry(&self, id: &str) -> Result<Option<EntryRecord>>;
    /// The entries among `ids` that exist (one query per chunk, not per id).
    async fn get_entries(&self, ids: &[&str]) -> Result<Vec<EntryRecord>>;
    async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<EntryRecord>>;
    /// Entries of `td` whose SPIFFE ID is reserved (`/signet` and below),
    /// stored before such IDs were refused.
    async fn entries_with_reserved_ids(&self, td: &TrustDomain) -> Result<Vec<EntryRecord>>;
    async fn delete_entry(&self, id: &str) -> Result<EntryRecord>;
    async fn count_entries(&self) -> Result<u64>;
    async fn entries_by_parent(&self, parent: &SpiffeId) -> Result<Vec<EntryRecord>> {
        self.list_entries(&EntryFilter::by_parent(parent)).await
    }
    /// `parent`'s entries in the order of [`Self::entries_by_parent`], each
    /// as soon as it is read, all from one consistent read. Hold the stream
    /// only as long as reading takes: it may pin a connection.
    fn entries_by_parent_streamed(&self, parent: &SpiffeId) -> BoxStream<'_, Result<EntryRecord>>;

    /// The revision of the last change.
    async fn current_revision(&self) -> Result<u64>;
    /// The trust bundle's sequence for the authorities digested in
    /// `fingerprint`: unchanged when it equals the stored fingerprint, else
    /// increased (1 the first time) and stored with it, atomically.
    async fn sync_bundle_sequence(&self, fingerprint: &str) -> Result<u64>;
    /// Drops join tokens that expired before `now`; returns how many.
    async fn prune_join_tokens(&self, now: i64) -> Result<u64>;

    /// Increases the persistent event revision by `by`; returns the new value.
    async fn bump_revision(&self, by: u64) -> Result<u64>;

    /// Records an issued X.509-SVID (`serial` lowercase hex).
    async fn record_x509(
        &self,
        serial: &str,
        spiffe_id: &SpiffeId,
        authority_id: &str,
        expires_at: i64,
    ) -> Result<()>;
    /// Records many issued X.509-SVIDs, committed when this returns: one
    /// transaction (one sync to disk) for a whole signing batch, shared
    /// with the batches recorded at the same time.
    async fn record_x509_many(&self, issued: Vec<IssuedX509>) -> Result<()>;
    /// Records a minted JWT-SVID.
    async fn record_jwt(
        &self,
        jti: &str,
        spiffe_id: &SpiffeId,
        kid: &str,
        expires_at: i64,
    ) -> Result<()>;
    /// Revokes a recorded, unexpired credential (`NotFound` otherwise).
    /// Revoking again keeps the first record.
    async fn revoke(
        &self,
        kind: RevokedKind,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Revocation>;
    /// Every revocation whose credential has not expired at `now`.
    async fn revocations(&self, now: i64) -> Result<Vec<Revocation>>;
    /// Drops issued-credential records and revocations expired at `now`;
    /// returns how many revocations went.
    async fn prune_expired(&self, now: i64) -> Result<u64>;
}
