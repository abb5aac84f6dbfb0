//! How an event is kept in the log: a kind and a JSON payload holding what
//! a stream resuming from the log needs (a deleted entry is gone from the
//! entries table, so its event carries the whole record).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use signet_core::{RegistrationEntry, Selector, SpiffeId, TrustDomain};

use super::Change;
use crate::datastore::{
    DataStoreError, EntryRecord, FederatedBundleRecord, PolicyRecord, Result, Revocation,
    RevokedKind,
};
use crate::federation::BundleSource;

const ENTRY_CREATED: &str = "entry_created";
const ENTRY_DELETED: &str = "entry_deleted";
const BUNDLE_CHANGED: &str = "bundle_changed";
const AGENT_REVOKED: &str = "agent_revoked";
const REVOKED: &str = "revoked";
const CRLS_CHANGED: &str = "crls_changed";
const TAINTED_CHANGED: &str = "tainted_changed";
const ENTRY_UPDATED: &str = "entry_updated";
const FEDERATED_BUNDLE_SET: &str = "federated_bundle_set";
const FEDERATED_BUNDLE_REMOVED: &str = "federated_bundle_removed";
const FEDERATION_CHANGED: &str = "federation_changed";
const POLICY_SET: &str = "policy_set";
const POLICY_REMOVED: &str = "policy_removed";

#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    name: String,
    text: String,
    created_at: i64,
    updated_at: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredFederatedBundle {
    trust_domain: String,
    /// The SPIFFE bundle document.
    document: String,
    source: String,
    updated_at: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    id: String,
    spiffe_id: String,
    parent_id: String,
    selectors: Vec<String>,
    /// Seconds; 0: the server's default.
    x509_svid_ttl: u64,
    jwt_svid_ttl: u64,
    dns_names: Vec<String>,
    hint: String,
    admin: bool,
    downstream: bool,
    revision: u64,
    created_at: i64,
    node: bool,
    /// Absent in events written before federation.
    #[serde(default)]
    federates_with: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredAgentRevoked {
    agent_id: String,
    banned: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredRevocation {
    kind: String,
    id: String,
    authority_id: String,
    reason: String,
    revoked_at: i64,
    expires_at: i64,
}

fn corrupt(kind: &str, e: impl std::fmt::Display) -> DataStoreError {
    DataStoreError::Corrupt(format!("{kind} event: {e}"))
}

fn json<T: Serialize>(kind: &str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| corrupt(kind, e))
}

fn id(kind: &str, s: &str) -> Result<SpiffeId> {
    SpiffeId::parse(s).map_err(|e| corrupt(kind, format!("{s:?}: {e}")))
}

fn ttl_secs(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |d| d.as_secs())
}

fn ttl(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn entry_json(kind: &str, rec: &EntryRecord) -> Result<String> {
    let e = &rec.entry;
    json(
        kind,
        &StoredEntry {
            id: e.id.clone(),
            spiffe_id: e.spiffe_id.to_string(),
            parent_id: e.parent_id.to_string(),
            selectors: e.selectors.iter().map(|s| s.to_string()).collect(),
            x509_svid_ttl: ttl_secs(e.x509_svid_ttl),
            jwt_svid_ttl: ttl_secs(e.jwt_svid_ttl),
            dns_names: e.dns_names.clone(),
            hint: e.hint.clone(),
            admin: e.admin,
            downstream: e.downstream,
            revision: e.revision,
            created_at: rec.created_at,
            node: rec.node,
            federates_with: e.federates_with.iter().map(|t| t.to_string()).collect(),
        },
    )
}

fn entry_from(kind: &str, payload: &str) -> Result<EntryRecord> {
    let s: StoredEntry = serde_json::from_str(payload).map_err(|e| corrupt(kind, e))?;
    let selectors = s
        .selectors
        .iter()
        .map(|sel| Selector::parse(sel).map_err(|e| corrupt(kind, e)))
        .collect::<Result<Vec<_>>>()?;
    Ok(EntryRecord {
        entry: RegistrationEntry {
            id: s.id,
            spiffe_id: id(kind, &s.spiffe_id)?,
            parent_id: id(kind, &s.parent_id)?,
            selectors,
            x509_svid_ttl: ttl(s.x509_svid_ttl),
            jwt_svid_ttl: ttl(s.jwt_svid_ttl),
            dns_names: s.dns_names,
            hint: s.hint,
            admin: s.admin,
            downstream: s.downstream,
            revision: s.revision,
            federates_with: s
                .federates_with
                .iter()
                .map(|t| TrustDomain::new(t).map_err(|e| corrupt(kind, e)))
                .collect::<Result<Vec<_>>>()?,
        },
        created_at: s.created_at,
        node: s.node,
    })
}

/// The stored kind and payload of `change`.
pub fn encode(change: &Change) -> Result<(&'static str, String)> {
    Ok(match change {
        Change::EntryCreated(rec) => (ENTRY_CREATED, entry_json(ENTRY_CREATED, rec)?),
        Change::EntryDeleted(rec) => (ENTRY_DELETED, entry_json(ENTRY_DELETED, rec)?),
        Change::BundleChanged => (BUNDLE_CHANGED, String::new()),
        Change::AgentRevoked { agent_id, banned } => (
            AGENT_REVOKED,
            json(
                AGENT_REVOKED,
                &StoredAgentRevoked {
                    agent_id: agent_id.to_string(),
                    banned: *banned,
                },
            )?,
        ),
        Change::Revoked(r) => (
            REVOKED,
            json(
                REVOKED,
                &StoredRevocation {
                    kind: r.kind.as_str().to_owned(),
                    id: r.id.clone(),
                    authority_id: r.authority_id.clone(),
                    reason: r.reason.clone(),
                    revoked_at: r.revoked_at,
                    expires_at: r.expires_at,
                },
            )?,
        ),
        Change::CrlsChanged => (CRLS_CHANGED, String::new()),
        Change::TaintedChanged => (TAINTED_CHANGED, String::new()),
        Change::EntryUpdated(rec) => (ENTRY_UPDATED, entry_json(ENTRY_UPDATED, rec)?),
        Change::FederatedBundleSet(rec) => (
            FEDERATED_BUNDLE_SET,
            json(
                FEDERATED_BUNDLE_SET,
                &StoredFederatedBundle {
                    trust_domain: rec.bundle.trust_domain.to_string(),
                    document: rec
                        .bundle
                        .to_spiffe_document(0)
                        .map_err(|e| corrupt(FEDERATED_BUNDLE_SET, e))?,
                    source: rec.source.as_str().to_owned(),
                    updated_at: rec.updated_at,
                },
            )?,
        ),
        Change::FederatedBundleRemoved(td) => (FEDERATED_BUNDLE_REMOVED, td.to_string()),
        Change::FederationChanged => (FEDERATION_CHANGED, String::new()),
        Change::PolicySet(p) => (
            POLICY_SET,
            json(
                POLICY_SET,
                &StoredPolicy {
                    name: p.name.clone(),
                    text: p.text.clone(),
                    created_at: p.created_at,
                    updated_at: p.updated_at,
                },
            )?,
        ),
        Change::PolicyRemoved(name) => (POLICY_REMOVED, name.clone()),
    })
}

/// The change stored as `kind` and `payload`.
pub fn decode(kind: &str, payload: &str) -> Result<Change> {
    Ok(match kind {
        ENTRY_CREATED => Change::EntryCreated(entry_from(kind, payload)?),
        ENTRY_DELETED => Change::EntryDeleted(entry_from(kind, payload)?),
        BUNDLE_CHANGED => Change::BundleChanged,
        AGENT_REVOKED => {
            let s: StoredAgentRevoked =
                serde_json::from_str(payload).map_err(|e| corrupt(kind, e))?;
            Change::AgentRevoked {
                agent_id: id(kind, &s.agent_id)?,
                banned: s.banned,
            }
        }
        REVOKED => {
            let s: StoredRevocation =
                serde_json::from_str(payload).map_err(|e| corrupt(kind, e))?;
            Change::Revoked(Revocation {
                kind: RevokedKind::parse(&s.kind)
                    .ok_or_else(|| corrupt(kind, format!("revocation kind {:?}", s.kind)))?,
                id: s.id,
                authority_id: s.authority_id,
                reason: s.reason,
                revoked_at: s.revoked_at,
                expires_at: s.expires_at,
            })
        }
        CRLS_CHANGED => Change::CrlsChanged,
        TAINTED_CHANGED => Change::TaintedChanged,
        ENTRY_UPDATED => Change::EntryUpdated(entry_from(kind, payload)?),
        FEDERATED_BUNDLE_SET => {
            let s: StoredFederatedBundle =
                serde_json::from_str(payload).map_err(|e| corrupt(kind, e))?;
            let td = TrustDomain::new(&s.trust_domain).map_err(|e| corrupt(kind, e))?;
            Change::FederatedBundleSet(FederatedBundleRecord {
                bundle: signet_core::bundle::parse_spiffe_bundle(&td, s.document.as_bytes())
                    .map_err(|e| corrupt(kind, e))?
                    .bundle,
                source: BundleSource::parse(&s.source)
                    .ok_or_else(|| corrupt(kind, format!("bundle source {:?}", s.source)))?,
                updated_at: s.updated_at,
            })
        }
        FEDERATED_BUNDLE_REMOVED => {
            Change::FederatedBundleRemoved(TrustDomain::new(payload).map_err(|e| corrupt(kind, e))?)
        }
        FEDERATION_CHANGED => Change::FederationChanged,
        POLICY_SET => {
            let s: StoredPolicy = serde_json::from_str(payload).map_err(|e| corrupt(kind, e))?;
            Change::PolicySet(PolicyRecord {
                name: s.name,
                text: s.text,
                created_at: s.created_at,
                updated_at: s.updated_at,
            })
        }
        POLICY_REMOVED => Change::PolicyRemoved(payload.to_owned()),
        other => {
            return Err(DataStoreError::Corrupt(format!(
                "unknown event kind {other:?}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node: bool) -> EntryRecord {
        EntryRecord {
            entry: RegistrationEntry {
                id: "e1".into(),
                spiffe_id: SpiffeId::parse("spiffe://example.org/w").unwrap(),
                parent_id: SpiffeId::parse("spiffe://example.org/agent").unwrap(),
                selectors: vec![Selector::parse("unix:uid:1000").unwrap()],
                x509_svid_ttl: Some(Duration::from_secs(600)),
                jwt_svid_ttl: None,
                dns_names: vec!["w.example.org".into()],
                hint: "h".into(),
                admin: true,
                downstream: false,
                revision: 7,
                federates_with: vec![],
            },
            created_at: 1_700_000_000,
            node,
        }
    }

    #[test]
    fn every_change_round_trips_through_its_stored_form() {
        let changes = [
            Change::EntryCreated(entry(false)),
            Change::EntryDeleted(entry(true)),
            Change::BundleChanged,
            Change::AgentRevoked {
                agent_id: SpiffeId::parse("spiffe://example.org/signet/agent/x").unwrap(),
                banned: true,
            },
            Change::Revoked(Revocation {
                kind: RevokedKind::Jwt,
                id: "jti-1".into(),
                authority_id: "kid".into(),
                reason: "leaked".into(),
                revoked_at: 1,
                expires_at: 2,
            }),
            Change::CrlsChanged,
            Change::TaintedChanged,
            Change::PolicySet(PolicyRecord {
                name: "orders".into(),
                text: "permit(principal, action, resource);\n".into(),
                created_at: 1,
                updated_at: 2,
            }),
            Change::PolicyRemoved("orders".into()),
        ];
        for change in changes {
            let (kind, payload) = encode(&change).unwrap();
            assert_eq!(decode(kind, &payload).unwrap(), change, "{kind}");
        }
    }

    #[test]
    fn a_damaged_event_is_reported_as_corrupt_not_a_panic() {
        for (kind, payload) in [
            ("entry_created", "{"),
            ("entry_deleted", r#"{"id":"x"}"#),
            ("agent_revoked", r#"{"agent_id":"not an id","banned":true}"#),
            (
                "revoked",
                r#"{"kind":"pgp","id":"","authority_id":"","reason":"","revoked_at":0,"expires_at":0}"#,
            ),
            ("policy_set", r#"{"name":"x"}"#),
            ("party", ""),
        ] {
            assert!(
                matches!(decode(kind, payload), Err(DataStoreError::Corrupt(_))),
                "{kind} {payload}"
            );
        }
    }
}
