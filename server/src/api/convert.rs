//! Domain values to wire messages (the reverse, with validation, is in
//! `validate.rs`).

use std::time::Duration;

use signet_proto::{admin, node};

use crate::bundle::REFRESH_HINT_SECS;
use crate::ca::{AuthorityInfo, AuthorityKind, Bundle, JwtAuthority};
use crate::datastore::{AgentRecord, EntryRecord};

fn ttl_secs(ttl: Option<Duration>) -> u32 {
    ttl.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

pub fn admin_entry(rec: &EntryRecord) -> admin::Entry {
    let e = &rec.entry;
    admin::Entry {
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
    }
}

pub fn node_entry(rec: &EntryRecord) -> node::Entry {
    let e = &rec.entry;
    node::Entry {
        id: e.id.clone(),
        spiffe_id: e.spiffe_id.to_string(),
        parent_id: e.parent_id.to_string(),
        selectors: e
            .selectors
            .iter()
            .map(|s| node::Selector {
                r#type: s.kind().to_owned(),
                value: s.value().to_owned(),
            })
            .collect(),
        x509_svid_ttl: ttl_secs(e.x509_svid_ttl),
        jwt_svid_ttl: ttl_secs(e.jwt_svid_ttl),
        dns_names: e.dns_names.clone(),
        hint: e.hint.clone(),
        admin: e.admin,
        downstream: e.downstream,
        revision: e.revision,
        federates_with: e.federates_with.iter().map(|t| t.to_string()).collect(),
    }
}

pub fn admin_agent(a: &AgentRecord) -> admin::Agent {
    admin::Agent {
        spiffe_id: a.spiffe_id.to_string(),
        attestation_type: a.attestation_type.clone(),
        serial: a.serial.clone(),
        expires_at: a.expires_at,
        banned: a.banned,
        selectors: a.selectors.iter().map(|s| s.to_string()).collect(),
        attested_at: a.attested_at,
    }
}

pub fn node_bundle(b: &Bundle) -> node::Bundle {
    node::Bundle {
        trust_domain: b.trust_domain.to_string(),
        x509_authorities: b.x509_authorities.clone(),
        sequence: b.sequence,
        jwt_authorities: b.jwt_authorities.iter().map(node_jwt_authority).collect(),
    }
}

pub fn admin_bundle(b: &Bundle) -> admin::GetBundleResponse {
    admin::GetBundleResponse {
        trust_domain: b.trust_domain.to_string(),
        x509_authorities: b.x509_authorities.clone(),
        sequence: b.sequence,
        jwt_authorities: b.jwt_authorities.iter().map(admin_jwt_authority).collect(),
        refresh_hint: REFRESH_HINT_SECS,
    }
}

fn jwk_json(a: &JwtAuthority) -> String {
    // A Jwk is plain strings; serialising it cannot fail, but never panic.
    serde_json::to_string(&a.jwk).unwrap_or_default()
}

fn node_jwt_authority(a: &JwtAuthority) -> node::JwtAuthority {
    node::JwtAuthority {
        kid: a.kid.clone(),
        jwk: jwk_json(a),
        expires_at: a.expires_at,
    }
}

fn admin_jwt_authority(a: &JwtAuthority) -> admin::JwtAuthority {
    admin::JwtAuthority {
        kid: a.kid.clone(),
        jwk: jwk_json(a),
        expires_at: a.expires_at,
    }
}

pub fn admin_authority(a: &AuthorityInfo) -> admin::Authority {
    admin::Authority {
        kind: match a.kind {
            AuthorityKind::X509 => admin::AuthorityKind::X509,
            AuthorityKind::Jwt => admin::AuthorityKind::Jwt,
        } as i32,
        id: a.id.clone(),
        state: a.state.as_str().to_owned(),
        tainted: a.tainted,
        not_before: a.not_before,
        not_after: a.not_after,
        certificate: a.certificate.clone().unwrap_or_default(),
        server_id: a.server_id.clone(),
    }
}
