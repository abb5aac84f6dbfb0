//! Rows to records and back, for every backend: the column lists (the same
//! names in SQLite and PostgreSQL), the encodings of lists (JSON text) and
//! TTLs (seconds, 0 for the default), and the decoders, written once over
//! [`Columns`].

use std::time::Duration;

use signet_core::{RegistrationEntry, Selector, SpiffeId, TrustDomain};
use sqlx::Row;

use super::{
    AgentRecord, AuthorityRecord, DataStoreError, EntryRecord, Result, Revocation, RevokedKind,
    ServerRecord,
};
use crate::audit::{Checkpoint, StoredRecord};
use crate::ca::{AuthorityKind, AuthorityState};

pub(super) const ENTRY_COLUMNS: &str = "id, spiffe_id, parent_id, selectors, x509_svid_ttl, \
     jwt_svid_ttl, dns_names, hint, admin, downstream, revision, created_at, node, federates_with";
/// How many columns `ENTRY_COLUMNS` names, counted from it when compiling.
pub(super) const ENTRY_COLUMN_COUNT: usize = commas(ENTRY_COLUMNS) + 1;

const fn commas(s: &str) -> usize {
    let bytes = s.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b',' {
            n += 1;
        }
        i += 1;
    }
    n
}

pub(super) const AGENT_COLUMNS: &str =
    "spiffe_id, attestation_type, serial, expires_at, banned, attested_at, selectors";

pub(super) const REVOCATION_COLUMNS: &str =
    "kind, id, authority_id, reason, revoked_at, expires_at";

pub(super) const AUTHORITY_COLUMNS: &str = "kind, id, server_id, state, tainted, not_before, \
     not_after, certificate, public_key, upstream_root, upstream_chain";

pub(super) const SERVER_COLUMNS: &str = "id, hostname, address, started_at, last_seen";

/// The typed reads the decoders need, for each backend's row type.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String>;
    fn text_opt(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn flag(&self, column: &str) -> Result<bool>;
    fn bytes_opt(&self, column: &str) -> Result<Option<Vec<u8>>>;
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String> {
                Ok(self.try_get(column)?)
            }
            fn text_opt(&self, column: &str) -> Result<Option<String>> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64> {
                Ok(self.try_get(column)?)
            }
            fn flag(&self, column: &str) -> Result<bool> {
                Ok(self.try_get(column)?)
            }
            fn bytes_opt(&self, column: &str) -> Result<Option<Vec<u8>>> {
                Ok(self.try_get(column)?)
            }
        }
    };
}

columns_for!(sqlx::sqlite::SqliteRow);
columns_for!(sqlx::postgres::PgRow);

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| DataStoreError::Corrupt(e.to_string()))
}

pub(super) fn trust_domains_json(tds: &[TrustDomain]) -> Result<String> {
    to_json(&tds.iter().map(TrustDomain::as_str).collect::<Vec<_>>())
}

fn parse_trust_domains(json: &str) -> Result<Vec<TrustDomain>> {
    let raw: Vec<String> =
        serde_json::from_str(json).map_err(|e| DataStoreError::Corrupt(e.to_string()))?;
    raw.iter()
        .map(|s| TrustDomain::new(s).map_err(|e| DataStoreError::Corrupt(format!("{s:?}: {e}"))))
        .collect()
}

pub(super) fn selectors_json(selectors: &[Selector]) -> Result<String> {
    to_json(&selectors.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

fn parse_selectors(json: &str) -> Result<Vec<Selector>> {
    let raw: Vec<String> =
        serde_json::from_str(json).map_err(|e| DataStoreError::Corrupt(e.to_string()))?;
    raw.iter()
        .map(|s| Selector::parse(s).map_err(|e| DataStoreError::Corrupt(e.to_string())))
        .collect()
}

fn parse_id(s: &str) -> Result<SpiffeId> {
    SpiffeId::parse(s).map_err(|e| DataStoreError::Corrupt(format!("{s:?}: {e}")))
}

pub(super) fn ttl_column(ttl: Option<Duration>) -> i64 {
    ttl.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ttl_from_column(secs: i64) -> Option<Duration> {
    u64::try_from(secs)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// A revision as the database stores it (a signed 64-bit integer).
pub(super) fn revision_column(revision: u64) -> Result<i64> {
    i64::try_from(revision)
        .map_err(|_| DataStoreError::InvalidArgument(format!("revision {revision} out of range")))
}

pub(super) fn revision_from_column(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| DataStoreError::Corrupt(format!("negative revision {value}")))
}

pub(super) fn sequence_from_column(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| DataStoreError::Corrupt("negative bundle sequence".into()))
}

pub(super) fn agent_from_row(row: &impl Columns) -> Result<AgentRecord> {
    Ok(AgentRecord {
        spiffe_id: parse_id(&row.text("spiffe_id")?)?,
        attestation_type: row.text("attestation_type")?,
        serial: row.text("serial")?,
        expires_at: row.int("expires_at")?,
        banned: row.flag("banned")?,
        attested_at: row.int("attested_at")?,
        selectors: parse_selectors(&row.text("selectors")?)?,
    })
}

pub(super) fn entry_from_row(row: &impl Columns) -> Result<EntryRecord> {
    let dns = row.text("dns_names")?;
    Ok(EntryRecord {
        entry: RegistrationEntry {
            id: row.text("id")?,
            spiffe_id: parse_id(&row.text("spiffe_id")?)?,
            parent_id: parse_id(&row.text("parent_id")?)?,
            selectors: parse_selectors(&row.text("selectors")?)?,
            x509_svid_ttl: ttl_from_column(row.int("x509_svid_ttl")?),
            jwt_svid_ttl: ttl_from_column(row.int("jwt_svid_ttl")?),
            dns_names: serde_json::from_str(&dns)
                .map_err(|e| DataStoreError::Corrupt(e.to_string()))?,
            hint: row.text("hint")?,
            admin: row.flag("admin")?,
            downstream: row.flag("downstream")?,
            revision: revision_from_column(row.int("revision")?)?,
            federates_with: parse_trust_domains(&row.text("federates_with")?)?,
        },
        created_at: row.int("created_at")?,
        node: row.flag("node")?,
    })
}

pub(super) fn revocation_from_row(row: &impl Columns) -> Result<Revocation> {
    let kind = row.text("kind")?;
    Ok(Revocation {
        kind: RevokedKind::parse(&kind)
            .ok_or_else(|| DataStoreError::Corrupt(format!("unknown revocation kind {kind:?}")))?,
        id: row.text("id")?,
        authority_id: row.text("authority_id")?,
        reason: row.text("reason")?,
        revoked_at: row.int("revoked_at")?,
        expires_at: row.int("expires_at")?,
    })
}

pub(super) const AUDIT_CHECKPOINT_COLUMNS: &str =
    "seq, hash, time_ms, server_id, key_id, public_key, signature";

/// An audit sequence number as stored (never negative).
pub(super) fn audit_seq(row: &impl Columns) -> Result<u64> {
    let seq = row.int("seq")?;
    u64::try_from(seq).map_err(|_| DataStoreError::Corrupt(format!("audit seq {seq}")))
}

/// An audit sequence number as a column value.
pub(super) fn audit_seq_column(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| DataStoreError::InvalidArgument(format!("audit seq {seq}")))
}

/// What a record of `kind` holds, as its canonical encoding writes it
/// (the database narrows with it; [`audit_of_kind`] decides).
pub(super) fn audit_kind_marker(kind: &str) -> String {
    format!("\"kind\":{}", serde_json::Value::from(kind))
}

/// The records whose decision really is of `kind` (a marker can also sit
/// inside an admin call's arguments).
pub(super) fn audit_of_kind(rows: Vec<StoredRecord>, kind: &str) -> Vec<StoredRecord> {
    rows.into_iter()
        .filter(|r| {
            crate::audit::AuditRecord::parse(&r.record).is_ok_and(|a| a.decision.kind() == kind)
        })
        .collect()
}

pub(super) fn audit_record_from_row(row: &impl Columns) -> Result<StoredRecord> {
    Ok(StoredRecord {
        seq: audit_seq(row)?,
        record: row.text("record")?,
        hash: row.text("hash")?,
    })
}

pub(super) fn audit_checkpoint_from_row(row: &impl Columns) -> Result<Checkpoint> {
    Ok(Checkpoint {
        seq: audit_seq(row)?,
        hash: row.text("hash")?,
        time_ms: row.int("time_ms")?,
        server_id: row.text("server_id")?,
        key_id: row.text("key_id")?,
        public_key: row.text("public_key")?,
        signature: row.text("signature")?,
    })
}

pub(super) fn authority_from_row(row: &impl Columns) -> Result<AuthorityRecord> {
    let kind = row.text("kind")?;
    let state = row.text("state")?;
    Ok(AuthorityRecord {
        kind: AuthorityKind::parse(&kind)
            .ok_or_else(|| DataStoreError::Corrupt(format!("authority kind {kind:?}")))?,
        id: row.text("id")?,
        server_id: row.text("server_id")?,
        state: AuthorityState::parse(&state)
            .ok_or_else(|| DataStoreError::Corrupt(format!("authority state {state:?}")))?,
        tainted: row.flag("tainted")?,
        not_before: row.int("not_before")?,
        not_after: row.int("not_after")?,
        certificate: row.bytes_opt("certificate")?,
        public_key: row.text_opt("public_key")?,
        upstream_root: row.bytes_opt("upstream_root")?,
        upstream_chain: row.bytes_opt("upstream_chain")?,
    })
}

pub(super) fn server_from_row(row: &impl Columns) -> Result<ServerRecord> {
    Ok(ServerRecord {
        id: row.text("id")?,
        hostname: row.text("hostname")?,
        address: row.text("address")?,
        started_at: row.int("started_at")?,
        last_seen: row.int("last_seen")?,
    })
}

/// `authorities` as they stand after `server_id`'s save: its own rows
/// replaced by `own`, less those revoked elsewhere, each keeping a taint
/// set elsewhere (a taint is never undone).
pub(super) fn merge_own(
    server_id: &str,
    own: Vec<AuthorityRecord>,
    stored: &[AuthorityRecord],
    revoked: &std::collections::HashSet<(String, String)>,
) -> Vec<AuthorityRecord> {
    own.into_iter()
        .filter(|a| !revoked.contains(&(a.kind.as_str().to_owned(), a.id.clone())))
        .map(|mut a| {
            a.server_id = server_id.to_owned();
            if stored
                .iter()
                .any(|s| s.kind == a.kind && s.id == a.id && s.tainted)
            {
                a.tainted = true;
            }
            a
        })
        .collect()
}

pub(super) fn event_from_row(row: &impl Columns) -> Result<std::sync::Arc<crate::events::Event>> {
    let revision = revision_from_column(row.int("id")?)?;
    let change = crate::events::decode(&row.text("kind")?, &row.text("payload")?)
        .map_err(|e| DataStoreError::Corrupt(format!("event {revision}: {e}")))?;
    Ok(std::sync::Arc::new(crate::events::Event {
        revision,
        change,
    }))
}

pub(super) const FEDERATED_BUNDLE_COLUMNS: &str =
    "trust_domain, document, sequence, source, updated_at";

pub(super) const RELATIONSHIP_COLUMNS: &str = "trust_domain, bundle_endpoint_url, profile, \
     endpoint_spiffe_id, ca_bundle, created_at, last_fetch_at, last_error";

fn parse_trust_domain(s: &str) -> Result<TrustDomain> {
    TrustDomain::new(s).map_err(|e| DataStoreError::Corrupt(format!("trust domain {s:?}: {e}")))
}

/// The document stored for `record`: its SPIFFE bundle (no refresh hint).
pub(super) fn federated_document(record: &super::FederatedBundleRecord) -> Result<String> {
    record
        .bundle
        .to_spiffe_document(0)
        .map_err(|e| DataStoreError::InvalidArgument(format!("bundle: {e}")))
}

pub(super) fn federated_bundle_from_row(
    row: &impl Columns,
) -> Result<super::FederatedBundleRecord> {
    let td = parse_trust_domain(&row.text("trust_domain")?)?;
    let mut bundle =
        signet_core::bundle::parse_spiffe_bundle(&td, row.text("document")?.as_bytes())
            .map_err(|e| DataStoreError::Corrupt(format!("bundle of {td}: {e}")))?
            .bundle;
    bundle.sequence = sequence_from_column(row.int("sequence")?)?;
    let source = row.text("source")?;
    Ok(super::FederatedBundleRecord {
        bundle,
        source: crate::federation::BundleSource::parse(&source)
            .ok_or_else(|| DataStoreError::Corrupt(format!("bundle source {source:?}")))?,
        updated_at: row.int("updated_at")?,
    })
}

/// The profile as stored: its name, the endpoint's SPIFFE ID, the CA PEM.
pub(super) fn profile_columns(
    profile: &crate::federation::EndpointProfile,
) -> (&'static str, String, String) {
    use crate::federation::EndpointProfile;
    match profile {
        EndpointProfile::HttpsSpiffe { endpoint_id } => {
            (profile.name(), endpoint_id.to_string(), String::new())
        }
        EndpointProfile::HttpsWeb { ca_bundle } => (
            profile.name(),
            String::new(),
            ca_bundle.clone().unwrap_or_default(),
        ),
    }
}

pub(super) fn relationship_from_row(row: &impl Columns) -> Result<super::RelationshipRecord> {
    use crate::federation::{EndpointProfile, HTTPS_SPIFFE, HTTPS_WEB};
    let profile = row.text("profile")?;
    let profile = match profile.as_str() {
        HTTPS_SPIFFE => EndpointProfile::HttpsSpiffe {
            endpoint_id: parse_id(&row.text("endpoint_spiffe_id")?)?,
        },
        HTTPS_WEB => EndpointProfile::HttpsWeb {
            ca_bundle: Some(row.text("ca_bundle")?).filter(|pem| !pem.is_empty()),
        },
        other => {
            return Err(DataStoreError::Corrupt(format!(
                "endpoint profile {other:?}"
            )))
        }
    };
    Ok(super::RelationshipRecord {
        trust_domain: parse_trust_domain(&row.text("trust_domain")?)?,
        bundle_endpoint_url: row.text("bundle_endpoint_url")?,
        profile,
        created_at: row.int("created_at")?,
        last_fetch_at: row.int("last_fetch_at")?,
        last_error: row.text("last_error")?,
    })
}
