//! Admin input becomes typed values here, once: SPIFFE IDs in our trust
//! domain, parsed selectors, sane TTLs, DNS names and JWT audiences.

use std::time::Duration;

use signet_core::entry::normalize_selectors;
use signet_core::jwt::AudienceError;
use signet_core::{
    RegistrationEntry, Selector, SelectorError, SpiffeId, SpiffeIdError, TrustDomain,
};
use signet_proto::admin;

use super::status::ApiError;
use crate::datastore::NewEntry;

/// Longest TTL an entry may ask for; the CA's lifetime caps it further.
const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
const MAX_HINT_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("invalid {field} {value:?}: {source}")]
    SpiffeId {
        field: &'static str,
        value: String,
        source: SpiffeIdError,
    },
    #[error("{field} {value:?} is not in the server's trust domain {trust_domain:?}")]
    ForeignTrustDomain {
        field: &'static str,
        value: String,
        trust_domain: String,
    },
    #[error("an entry needs at least one selector")]
    NoSelectors,
    #[error("invalid selector {value:?}: {source}")]
    Selector {
        value: String,
        source: SelectorError,
    },
    #[error("{field} must be at most {max} seconds (one year)", max = MAX_TTL.as_secs())]
    TtlTooLong { field: &'static str },
    #[error("invalid DNS name {0:?}: labels of letters, digits and '-', separated by dots (a leading \"*.\" is allowed)")]
    DnsName(String),
    #[error("hint must be at most 1024 bytes without control characters")]
    Hint,
    #[error(transparent)]
    Audience(#[from] AudienceError),
    #[error("a node-alias entry cannot have {0}")]
    AliasField(&'static str),
    #[error("a node-alias entry cannot use the server's SPIFFE ID")]
    AliasIsServer,
    #[error("{field} {value:?} is reserved: paths under /signet name Signet's own agents and servers, and no entry or minted SVID may carry one")]
    Reserved { field: &'static str, value: String },
    #[error("invalid federated trust domain {value:?}: {source}")]
    FederatedTrustDomain {
        value: String,
        source: SpiffeIdError,
    },
    #[error("an entry cannot federate with its own trust domain {0:?}")]
    FederatesWithSelf(String),
}

/// The trust domains an entry federates with: each valid, none `td`
/// itself; sorted, duplicates dropped.
pub fn federates_with(values: &[String], td: &TrustDomain) -> Result<Vec<TrustDomain>, EntryError> {
    let mut out = values
        .iter()
        .map(|v| {
            let parsed = crate::federation::trust_domain(v).map_err(|source| {
                EntryError::FederatedTrustDomain {
                    value: v.clone(),
                    source,
                }
            })?;
            if &parsed == td {
                return Err(EntryError::FederatesWithSelf(td.to_string()));
            }
            Ok(parsed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

pub fn spiffe_id_in(
    field: &'static str,
    value: &str,
    td: &TrustDomain,
) -> Result<SpiffeId, EntryError> {
    let id = SpiffeId::parse_with_path(value).map_err(|source| EntryError::SpiffeId {
        field,
        value: value.to_owned(),
        source,
    })?;
    if !id.is_member_of(td) {
        return Err(EntryError::ForeignTrustDomain {
            field,
            value: value.to_owned(),
            trust_domain: td.to_string(),
        });
    }
    Ok(id)
}

/// A SPIFFE ID a workload may hold: in our trust domain, not reserved.
pub fn workload_id_in(
    field: &'static str,
    value: &str,
    td: &TrustDomain,
) -> Result<SpiffeId, EntryError> {
    let id = spiffe_id_in(field, value, td)?;
    not_reserved(field, id)
}

/// Refuses a Signet path (see [`SpiffeId::is_reserved`]).
pub fn not_reserved(field: &'static str, id: SpiffeId) -> Result<SpiffeId, EntryError> {
    if id.is_reserved() {
        return Err(EntryError::Reserved {
            field,
            value: id.to_string(),
        });
    }
    Ok(id)
}

pub fn selector(value: &str) -> Result<Selector, EntryError> {
    Selector::parse(value).map_err(|source| EntryError::Selector {
        value: value.to_owned(),
        source,
    })
}

fn ttl(field: &'static str, secs: u32) -> Result<Option<Duration>, EntryError> {
    let d = Duration::from_secs(u64::from(secs));
    if d > MAX_TTL {
        return Err(EntryError::TtlTooLong { field });
    }
    Ok((secs > 0).then_some(d))
}

/// A JWT-SVID audience: at least one, none empty, within the bounds every
/// API shares (`signet_core::jwt::check_audience`).
pub fn check_audience(audience: &[String]) -> Result<(), EntryError> {
    Ok(signet_core::jwt::check_audience(audience)?)
}

/// A requested TTL in seconds: 0 means the server's default.
pub fn requested_ttl(secs: u32) -> Result<Option<Duration>, EntryError> {
    ttl("ttl", secs)
}

pub fn dns_name(name: &str) -> Result<String, EntryError> {
    let bad = || EntryError::DnsName(name.to_owned());
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    for label in rest.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// A new entry from the Admin API, validated; `id` is assigned by the caller.
pub fn new_entry(
    req: &admin::Entry,
    td: &TrustDomain,
    id: String,
) -> Result<RegistrationEntry, EntryError> {
    let spiffe_id = workload_id_in("spiffe_id", &req.spiffe_id, td)?;
    let parent_id = spiffe_id_in("parent_id", &req.parent_id, td)?;
    if req.selectors.is_empty() {
        return Err(EntryError::NoSelectors);
    }
    let selectors = req
        .selectors
        .iter()
        .map(|s| selector(s))
        .collect::<Result<Vec<_>, _>>()?;
    let dns_names = req
        .dns_names
        .iter()
        .map(|d| dns_name(d))
        .collect::<Result<Vec<_>, _>>()?;
    if req.hint.len() > MAX_HINT_LEN || req.hint.chars().any(char::is_control) {
        return Err(EntryError::Hint);
    }
    Ok(RegistrationEntry {
        id,
        spiffe_id,
        parent_id,
        selectors: normalize_selectors(selectors),
        x509_svid_ttl: ttl("x509_svid_ttl", req.x509_svid_ttl)?,
        jwt_svid_ttl: ttl("jwt_svid_ttl", req.jwt_svid_ttl)?,
        dns_names,
        hint: req.hint.clone(),
        admin: req.admin,
        downstream: req.downstream,
        revision: 0,
        federates_with: federates_with(&req.federates_with, td)?,
    })
}

/// A node-alias entry: no parent may be given (it is stored under the
/// server's ID, see `crate::alias`), at least one selector, and nothing that
/// only an SVID would carry.
pub fn new_node_alias(
    req: &admin::Entry,
    td: &TrustDomain,
    id: String,
) -> Result<RegistrationEntry, EntryError> {
    if !req.parent_id.is_empty() {
        return Err(EntryError::AliasField("parent_id"));
    }
    if !req.dns_names.is_empty() {
        return Err(EntryError::AliasField("dns_names"));
    }
    if req.admin || req.downstream {
        return Err(EntryError::AliasField("admin/downstream"));
    }
    let parent = crate::alias::alias_parent(td).map_err(|source| EntryError::SpiffeId {
        field: "parent_id",
        value: td.to_string(),
        source,
    })?;
    let spiffe_id = spiffe_id_in("spiffe_id", &req.spiffe_id, td)?;
    if spiffe_id == parent {
        return Err(EntryError::AliasIsServer);
    }
    let with_parent = admin::Entry {
        parent_id: parent.to_string(),
        ..req.clone()
    };
    new_entry(&with_parent, td, id)
}

/// A workload entry or, when `req.node` is set, a node alias: what both
/// CreateEntry and BatchCreateEntry store.
pub fn new_registration(
    req: &admin::Entry,
    td: &TrustDomain,
    id: String,
) -> Result<NewEntry, EntryError> {
    let entry = if req.node {
        new_node_alias(req, td, id)?
    } else {
        new_entry(req, td, id)?
    };
    Ok(NewEntry {
        entry,
        node: req.node,
    })
}

/// An agent's SPIFFE ID as a request names it.
pub fn parse_agent_id(s: &str) -> Result<SpiffeId, ApiError> {
    SpiffeId::parse_with_path(s)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid spiffe_id {s:?}: {e}")))
}

/// A SPIFFE ID filter: empty means none.
pub fn optional_id(field: &str, s: &str) -> Result<Option<SpiffeId>, ApiError> {
    if s.is_empty() {
        return Ok(None);
    }
    SpiffeId::parse(s)
        .map(Some)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid {field} {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn req(spiffe_id: &str, selectors: &[&str]) -> admin::Entry {
        admin::Entry {
            spiffe_id: spiffe_id.into(),
            parent_id: "spiffe://example.org/signet/agent/join_token/t".into(),
            selectors: selectors.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn bad_spiffe_id_names_the_rule() {
        let err = new_entry(
            &req("spiffe://example.org/a/", &["unix:uid:1"]),
            &td(),
            "x".into(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid spiffe_id \"spiffe://example.org/a/\": path must not end with a trailing slash"
        );
    }

    #[test]
    fn foreign_trust_domain_missing_or_bad_selector_are_refused() {
        assert!(matches!(
            new_entry(
                &req("spiffe://other.org/a", &["unix:uid:1"]),
                &td(),
                "x".into()
            ),
            Err(EntryError::ForeignTrustDomain { .. })
        ));
        assert_eq!(
            new_entry(&req("spiffe://example.org/a", &[]), &td(), "x".into()),
            Err(EntryError::NoSelectors)
        );
        let err =
            new_entry(&req("spiffe://example.org/a", &["unix"]), &td(), "x".into()).unwrap_err();
        assert!(
            err.to_string().contains("must have the form type:value"),
            "{err}"
        );
    }

    #[test]
    fn dns_names_are_checked() {
        assert_eq!(dns_name("Web.Example.org").unwrap(), "web.example.org");
        assert!(dns_name("*.example.org").is_ok());
        for bad in ["", "a..b", "-a.b", "a b", "*."] {
            assert!(dns_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn audience_needs_one_value_and_no_empty_ones() {
        assert!(check_audience(&["a".into(), "b".into()]).is_ok());
        assert_eq!(
            check_audience(&[]),
            Err(EntryError::Audience(AudienceError::Missing))
        );
        assert_eq!(
            check_audience(&["a".into(), String::new()]),
            Err(EntryError::Audience(AudienceError::EmptyValue))
        );
        let many: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        assert_eq!(
            check_audience(&many),
            Err(EntryError::Audience(AudienceError::TooMany(10_000)))
        );
    }
}
