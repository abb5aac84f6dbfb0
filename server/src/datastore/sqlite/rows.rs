//! Rows to records and back: the column lists and the encodings of lists
//! (JSON text) and TTLs (seconds, 0 for the default).

use std::sync::LazyLock;
use std::time::Duration;

use signet_core::{RegistrationEntry, Selector, SpiffeId};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::datastore::{AgentRecord, DataStoreError, EntryRecord, Result, Revocation, RevokedKind};

/// SQLite's default bound on parameters per statement.
pub(super) const MAX_PARAMS: usize = 999;

pub(super) const ENTRY_COLUMNS: &str = "id, spiffe_id, parent_id, selectors, x509_svid_ttl, \
     jwt_svid_ttl, dns_names, hint, admin, downstream, revision, created_at, node";
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

/// One parent's entries in creation order, read along the
/// `entries_parent_created` index (no sort, so rows stream as they are read).
pub(super) static ENTRIES_BY_PARENT: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE parent_id = ? ORDER BY created_at, id")
});

pub(super) const AGENT_COLUMNS: &str =
    "spiffe_id, attestation_type, serial, expires_at, banned, attested_at, selectors";

pub(super) const REVOCATION_COLUMNS: &str =
    "kind, id, authority_id, reason, revoked_at, expires_at";

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| DataStoreError::Corrupt(e.to_string()))
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

pub(super) fn agent_from_row(row: &SqliteRow) -> Result<AgentRecord> {
    Ok(AgentRecord {
        spiffe_id: parse_id(&row.try_get::<String, _>("spiffe_id")?)?,
        attestation_type: row.try_get("attestation_type")?,
        serial: row.try_get("serial")?,
        expires_at: row.try_get("expires_at")?,
        banned: row.try_get("banned")?,
        attested_at: row.try_get("attested_at")?,
        selectors: parse_selectors(&row.try_get::<String, _>("selectors")?)?,
    })
}

pub(super) fn entry_from_row(row: &SqliteRow) -> Result<EntryRecord> {
    let dns: String = row.try_get("dns_names")?;
    Ok(EntryRecord {
        entry: RegistrationEntry {
            id: row.try_get("id")?,
            spiffe_id: parse_id(&row.try_get::<String, _>("spiffe_id")?)?,
            parent_id: parse_id(&row.try_get::<String, _>("parent_id")?)?,
            selectors: parse_selectors(&row.try_get::<String, _>("selectors")?)?,
            x509_svid_ttl: ttl_from_column(row.try_get("x509_svid_ttl")?),
            jwt_svid_ttl: ttl_from_column(row.try_get("jwt_svid_ttl")?),
            dns_names: serde_json::from_str(&dns)
                .map_err(|e| DataStoreError::Corrupt(e.to_string()))?,
            hint: row.try_get("hint")?,
            admin: row.try_get("admin")?,
            downstream: row.try_get("downstream")?,
            revision: revision_from_column(row.try_get("revision")?)?,
        },
        created_at: row.try_get("created_at")?,
        node: row.try_get("node")?,
    })
}

pub(super) fn revocation_from_row(row: &SqliteRow) -> Result<Revocation> {
    let kind: String = row.try_get("kind")?;
    Ok(Revocation {
        kind: RevokedKind::parse(&kind)
            .ok_or_else(|| DataStoreError::Corrupt(format!("unknown revocation kind {kind:?}")))?,
        id: row.try_get("id")?,
        authority_id: row.try_get("authority_id")?,
        reason: row.try_get("reason")?,
        revoked_at: row.try_get("revoked_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// `?, ?, ...` for `n` parameters.
pub(super) fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}
