//! Where the server keeps join tokens, agents, registration entries, issued
//! credentials, every server's authorities and CRLs, the bundle's sequence
//! and the event log. One narrow trait per kind of record; a backend
//! (`sqlite`: one server, embedded; `postgres`: any number of servers on
//! one database) implements all of them, and [`DataStore`] names the whole.
//!
//! Every change an agent may care about is written with its event, in the
//! same transaction: the event's id is the change's revision, taken from one
//! counter row, so commit order is revision order and a tailer of the log
//! never skips one (see `crate::events`).

mod batch;
mod error;
pub mod migrate;
pub mod open;
pub mod postgres;
mod recorder;
mod records;
mod rows;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use signet_core::{RegistrationEntry, SpiffeId, TrustDomain};
use tokio::sync::broadcast;

use crate::audit::{Checkpoint, StoredRecord};
use crate::ca::AuthorityKind;
use crate::events::{Change, Event};
pub use error::{DataStoreError, Result};
pub use open::{open, DatastoreUrl, PostgresSettings};
pub use postgres::PostgresDataStore;
pub use records::{
    bundle_fingerprint, AgentRecord, AuthorityRecord, EntryFilter, EntryRecord, EntryUpdate,
    FederatedBundleRecord, IssuedX509, NewEntry, RelationshipRecord, Revocation, RevokedKind,
    SavedAuthorities, ServerRecord, StoredAuthorities, StoredCrl,
};
pub use sqlite::SqliteDataStore;

/// Join tokens and attested agents.
#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
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

    /// Drops join tokens that expired before `now`; returns how many.
    async fn prune_join_tokens(&self, now: i64) -> Result<u64>;

    /// Records `agent` (attested by a method without tokens), replacing an
    /// earlier or evicted record of the same ID; refuses a banned ID.
    async fn attest_agent(&self, agent: AgentRecord) -> Result<AgentRecord>;

    async fn get_agent(&self, id: &SpiffeId) -> Result<Option<AgentRecord>>;
    async fn list_agents(&self) -> Result<Vec<AgentRecord>>;
    /// Records the serial and expiry of a renewed agent SVID.
    async fn update_agent_svid(&self, id: &SpiffeId, serial: &str, expires_at: i64) -> Result<()>;
    /// Deletes the agent (it must attest again) with its `AgentRevoked` event.
    async fn evict_agent(&self, id: &SpiffeId) -> Result<AgentRecord>;
    /// Marks the agent banned (the record stays so it cannot come back),
    /// with its `AgentRevoked` event.
    async fn ban_agent(&self, id: &SpiffeId) -> Result<AgentRecord>;
}

/// Registration entries, each stored with its `EntryCreated` or
/// `EntryDeleted` event; an entry's revision is its event's.
#[async_trait]
pub trait EntryStore: Send + Sync + 'static {
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
    /// Changes what `update` names of entry `id` (the trust domains it
    /// federates with, its downstream flag), under a new revision, with its
    /// `EntryUpdated` event.
    async fn update_entry(&self, id: &str, update: EntryUpdate) -> Result<EntryRecord>;
    async fn count_entries(&self) -> Result<u64>;
    async fn entries_by_parent(&self, parent: &SpiffeId) -> Result<Vec<EntryRecord>> {
        self.list_entries(&EntryFilter::by_parent(parent)).await
    }
    /// `parent`'s entries in the order of [`Self::entries_by_parent`], each
    /// as soon as it is read, all from one consistent read. Hold the stream
    /// only as long as reading takes: it may pin a connection.
    fn entries_by_parent_streamed(&self, parent: &SpiffeId) -> BoxStream<'_, Result<EntryRecord>>;
}

/// Issued credentials (for revocation) and the revocations themselves.
#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
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
    /// Revokes a recorded, unexpired credential (`NotFound` otherwise), with
    /// its `Revoked` event. Revoking again keeps the first record.
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

/// Every server's CA authorities (their public part and states) and the
/// bundle's sequence. Each server saves its own; the trust bundle is the
/// union of all.
#[async_trait]
pub trait AuthorityStore: Send + Sync + 'static {
    /// Every server's authorities (each server's in the order saved), the
    /// sequence, and the revision they reflect, from one consistent read.
    async fn load_authorities(&self) -> Result<StoredAuthorities>;
    /// Replaces `server_id`'s authorities with `authorities`, in one
    /// transaction with: the bundle's sequence, increased (1 the first
    /// time) when the union's [`bundle_fingerprint`] differs from the
    /// stored one, with its `BundleChanged` event; and an event for each of
    /// `changes`. A taint another server set on one of them is kept, and
    /// one another server revoked is not stored again.
    async fn save_authorities(
        &self,
        server_id: &str,
        authorities: Vec<AuthorityRecord>,
        changes: Vec<Change>,
    ) -> Result<SavedAuthorities>;
    /// Marks any server's non-active authority tainted, with its
    /// `TaintedChanged` event (the owner need not be running).
    async fn taint_authority(&self, kind: AuthorityKind, id: &str) -> Result<AuthorityRecord>;
    /// Removes any server's tainted, non-active authority from the bundle
    /// for good, with `BundleChanged` and `TaintedChanged`.
    async fn revoke_authority(&self, kind: AuthorityKind, id: &str) -> Result<AuthorityRecord>;
}

/// Federated trust domains' bundles and the relationships that fetch them,
/// shared by every server of a group.
#[async_trait]
pub trait FederationStore: Send + Sync + 'static {
    /// Stores `record` as its trust domain's bundle, with its
    /// `FederatedBundleSet` event; the same document again changes nothing.
    /// With `newer_only`, one whose sequence is below the stored one's is
    /// refused (`FailedPrecondition`): a bundle endpoint never goes back.
    async fn set_federated_bundle(
        &self,
        record: FederatedBundleRecord,
        newer_only: bool,
    ) -> Result<FederatedBundleRecord>;
    async fn federated_bundle(&self, td: &TrustDomain) -> Result<Option<FederatedBundleRecord>>;
    async fn federated_bundles(&self) -> Result<Vec<FederatedBundleRecord>>;
    /// Deletes a bundle no relationship fetches, with its
    /// `FederatedBundleRemoved` event.
    async fn delete_federated_bundle(&self, td: &TrustDomain) -> Result<FederatedBundleRecord>;
    /// Stores a new relationship (`AlreadyExists` when its trust domain has
    /// one) and, when given and no bundle is held yet, the bundle to check
    /// the endpoint with at first contact; with `FederationChanged`.
    async fn create_relationship(
        &self,
        relationship: RelationshipRecord,
        bootstrap: Option<FederatedBundleRecord>,
    ) -> Result<RelationshipRecord>;
    /// Replaces a relationship's endpoint and profile, with `FederationChanged`.
    async fn update_relationship(
        &self,
        relationship: RelationshipRecord,
    ) -> Result<RelationshipRecord>;
    /// Deletes a relationship (its bundle stays until deleted), with
    /// `FederationChanged`.
    async fn delete_relationship(&self, td: &TrustDomain) -> Result<RelationshipRecord>;
    async fn relationship(&self, td: &TrustDomain) -> Result<Option<RelationshipRecord>>;
    async fn relationships(&self) -> Result<Vec<RelationshipRecord>>;
    /// Records a fetch of `td`'s endpoint at `at` and its error ("" for none).
    async fn record_fetch(&self, td: &TrustDomain, at: i64, error: &str) -> Result<()>;
}

/// The servers sharing the datastore, and the CRLs each signs for its own
/// X.509 authorities.
#[async_trait]
pub trait ServerStore: Send + Sync + 'static {
    /// Records (or refreshes) a starting server; it also takes over
    /// authorities stored before servers had ids (a single-server store).
    async fn register_server(&self, server: ServerRecord) -> Result<()>;
    /// Says the server is alive at `now` (unix seconds).
    async fn touch_server(&self, id: &str, now: i64) -> Result<()>;
    async fn list_servers(&self) -> Result<Vec<ServerRecord>>;
    /// Forgets a server that is gone for good; its authorities stay in the
    /// bundle until they expire (what they signed may still be in use),
    /// then [`Self::prune_authorities`] drops them.
    async fn remove_server(&self, id: &str) -> Result<ServerRecord>;
    /// Drops authorities that expired before `now` whose server was
    /// removed (no one else would), with `BundleChanged`; how many went.
    async fn prune_authorities(&self, now: i64) -> Result<u64>;
    /// Replaces `server_id`'s CRLs, with a `CrlsChanged` event.
    async fn save_crls(&self, server_id: &str, crls: Vec<StoredCrl>) -> Result<()>;
    /// Every server's CRLs.
    async fn crls(&self) -> Result<Vec<StoredCrl>>;
}

/// The log of events, in revision order.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `changes` whose state the datastore does not hold (the CA's,
    /// for now), one event each, in one transaction; returns the last
    /// revision (the current one when `changes` is empty).
    async fn append_events(&self, changes: Vec<Change>) -> Result<u64>;
    /// The events after `revision`, at most `limit`, in revision order.
    async fn events_after(&self, revision: u64, limit: usize) -> Result<Vec<Arc<Event>>>;
    /// The revision of the last committed event.
    async fn current_revision(&self) -> Result<u64>;
    /// Every event after this revision is still in the log.
    async fn events_floor(&self) -> Result<u64>;
    /// Drops all but the newest `keep` events; returns how many went.
    async fn prune_events(&self, keep: u64) -> Result<u64>;
    /// The events this process commits, each batch sent right after its
    /// commit (a receiver that lags reads the rest from the log).
    fn commits(&self) -> broadcast::Receiver<Arc<[Arc<Event>]>>;
}

/// The audit log: one hash-chained record per security decision, one chain
/// for every server of the group (see `crate::audit`).
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends `records` (canonical encodings), in order, chained to the
    /// current head, in one transaction; returns the new head.
    async fn append_audit(&self, records: Vec<String>) -> Result<Option<StoredRecord>>;
    /// The records from sequence number `from` on, at most `limit`.
    async fn audit_records(&self, from: u64, limit: usize) -> Result<Vec<StoredRecord>>;
    /// The last record, if any.
    async fn audit_head(&self) -> Result<Option<StoredRecord>>;
    /// The newest `limit` records of `kind`, newest first (for the
    /// dashboard; a scan of the log in the database).
    async fn audit_latest(&self, kind: &str, limit: usize) -> Result<Vec<StoredRecord>>;
    async fn add_audit_checkpoint(&self, checkpoint: Checkpoint) -> Result<()>;
    /// Deletes the records through `seq` (retention); how many went.
    async fn prune_audit(&self, seq: u64) -> Result<u64>;
    /// Every checkpoint, oldest first.
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>>;
}

/// A value an anomaly detector saw for a subject, and when first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub subject: String,
    pub value: String,
    /// Unix seconds.
    pub first_seen: i64,
}

/// What anomaly detectors have seen (see `anomaly::novelty`), shared by
/// the servers of a group.
#[async_trait]
pub trait SightingStore: Send + Sync + 'static {
    /// Every sighting of `kind` for any of `subjects`.
    async fn sightings(&self, kind: &str, subjects: &[String]) -> Result<Vec<Sighting>>;
    /// Records first sightings; one already recorded keeps its time.
    async fn add_sightings(&self, kind: &str, rows: Vec<Sighting>) -> Result<()>;
}

/// A named source of Cedar authorization policies (see `signet-authz`),
/// stored as given once the Admin API validated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    pub name: String,
    pub text: String,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// Authorization policies; each change is an event (agents follow them).
#[async_trait]
pub trait PolicyStore: Send + Sync + 'static {
    /// `AlreadyExists` when the name is taken.
    async fn create_policy(&self, record: PolicyRecord) -> Result<PolicyRecord>;
    /// Replaces the text (`created_at` kept); `NotFound` when absent.
    async fn update_policy(&self, record: PolicyRecord) -> Result<PolicyRecord>;
    async fn delete_policy(&self, name: &str) -> Result<PolicyRecord>;
    async fn policy(&self, name: &str) -> Result<Option<PolicyRecord>>;
    /// Every source, by name.
    async fn policies(&self) -> Result<Vec<PolicyRecord>>;
}

/// The connection to the database itself.
#[async_trait]
pub trait Connection: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Whether the database answers now (a round trip).
    async fn ping(&self) -> Result<()>;
    /// Closes every connection, after what is in flight.
    async fn close(&self);
}

/// A whole backend.
pub trait DataStore:
    AgentStore
    + EntryStore
    + CredentialStore
    + AuthorityStore
    + ServerStore
    + FederationStore
    + EventLog
    + AuditStore
    + SightingStore
    + PolicyStore
    + Connection
{
}

impl<T> DataStore for T where
    T: AgentStore
        + EntryStore
        + CredentialStore
        + AuthorityStore
        + ServerStore
        + FederationStore
        + EventLog
        + AuditStore
        + SightingStore
        + PolicyStore
        + Connection
{
}

/// Every store trait, for code that calls them on a concrete backend.
pub mod prelude {
    pub use super::{
        AgentStore, AuditStore, AuthorityStore, Connection, CredentialStore, EntryStore, EventLog,
        FederationStore, ServerStore, SightingStore,
    };
}

/// The conformance suite every backend runs.
#[cfg(test)]
mod tests;
