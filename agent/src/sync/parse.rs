//! The Sync stream's messages turned into the domain types the cache manager
//! takes. The wire is parsed once, here; a malformed piece (an entry, a JWT
//! key, a federated bundle, a trust domain an entry federates with) is logged
//! and left out so it cannot take the rest of the message down.

use std::time::Duration;

use signet_core::bundle::{Bundle, JwtAuthority};
use signet_core::clock::from_unix_seconds;
use signet_core::jwt::{Jwk, JwtPublicKey};
use signet_core::{RegistrationEntry, Selector, SpiffeId, SpiffeIdError, TrustDomain};
use signet_proto::node::revoked_credential::Credential;
use signet_proto::node::{self, Entry, RevokedCredential, SyncResponse};

use crate::cache::{Revocations, SyncUpdate, Tainted};

/// One message of the stream, parsed.
pub fn update_from_proto(message: SyncResponse) -> SyncUpdate {
    tracing::debug!(
        revision = message.revision,
        snapshot = message.snapshot,
        entries = message.entries.len(),
        removed = message.removed_entry_ids.len(),
        revocations = message.revocations.len(),
        federated_bundles = message.federated_bundles.len(),
        removed_federated_bundles = message.removed_federated_bundles.len(),
        "sync message"
    );
    // The entries of one message share their parent's ID and the trust
    // domain's text rather than each holding a copy (~1 MB at 10k).
    let mut parent: Option<SpiffeId> = None;
    let entries = message
        .entries
        .into_iter()
        .filter_map(|e| {
            let id = e.id.clone();
            entry_from_proto(e)
                .map_err(|error| tracing::warn!(entry_id = id, %error, "ignoring malformed entry"))
                .ok()
        })
        .map(|mut e| {
            match &parent {
                Some(p) if *p == e.parent_id => e.parent_id = p.clone(),
                _ => parent = Some(e.parent_id.clone()),
            }
            e.spiffe_id = e.spiffe_id.sharing(e.parent_id.trust_domain());
            e
        })
        .collect();
    let bundle = message.bundle.and_then(|b| {
        let name = b.trust_domain.clone();
        bundle_from_proto(b)
            .map_err(|error| tracing::warn!(trust_domain = name, %error, "ignoring a bundle without a valid trust domain"))
            .ok()
    });
    let federated_bundles = message
        .federated_bundles
        .into_iter()
        .filter_map(|b| {
            let name = b.trust_domain.clone();
            bundle_from_proto(b)
                .map_err(|error| tracing::warn!(trust_domain = name, %error, "ignoring a federated bundle without a valid trust domain"))
                .ok()
        })
        .collect();
    let removed_federated_bundles = message
        .removed_federated_bundles
        .iter()
        .filter_map(|name| {
            TrustDomain::new(name)
                .map_err(|error| tracing::warn!(trust_domain = name, %error, "ignoring the removal of a federated bundle with an invalid trust domain"))
                .ok()
        })
        .collect();
    SyncUpdate {
        snapshot: message.snapshot,
        preview: false,
        previewed: vec![],
        entries,
        removed_entry_ids: message.removed_entry_ids,
        bundle,
        federated_bundles,
        removed_federated_bundles,
        policies: message
            .policies
            .into_iter()
            .map(|p| (p.name, p.text))
            .collect(),
        policies_complete: message.policies_complete,
        removed_policies: message.removed_policies,
        revision: message.revision,
        revocations: revocations_from_proto(&message.revocations),
        crls: message.crls.map(|c| c.crls),
        tainted: message.tainted.map(|t| Tainted {
            x509: t
                .x509
                .into_iter()
                .map(|id| id.to_ascii_lowercase())
                .collect(),
            jwt_kids: t.jwt_kids.into_iter().collect(),
        }),
        cut_off: None,
    }
}

/// A trust domain's bundle off the wire, the own one or a federated one
/// alike; only the trust domain's name can make it unusable (a bad JWT key
/// is skipped, see [`jwt_authorities_from_proto`]).
pub fn bundle_from_proto(b: node::Bundle) -> Result<Bundle, SpiffeIdError> {
    Ok(Bundle {
        trust_domain: TrustDomain::new(&b.trust_domain)?,
        jwt_authorities: jwt_authorities_from_proto(&b.jwt_authorities),
        x509_authorities: b.x509_authorities,
        sequence: b.sequence,
    })
}

/// Revocations on the wire, serials normalized to lowercase hex.
pub fn revocations_from_proto(list: &[RevokedCredential]) -> Revocations {
    let mut out = Revocations::default();
    for r in list {
        let expires = from_unix_seconds(r.expires_at);
        match &r.credential {
            Some(Credential::X509Serial(serial)) => {
                let serial: String = serial
                    .chars()
                    .filter(|c| *c != ':')
                    .collect::<String>()
                    .to_ascii_lowercase();
                let serial = serial.trim_start_matches('0').to_owned();
                tracing::info!(serial, reason = r.reason, "X.509-SVID revoked");
                out.x509_serials.insert(serial, expires);
            }
            Some(Credential::JwtId(jti)) => {
                tracing::info!(jti, reason = r.reason, "JWT-SVID revoked");
                out.jwt_ids.insert(jti.clone(), expires);
            }
            None => {}
        }
    }
    out
}

/// Parses the bundle's JWT keys once; a key that does not parse is logged
/// and skipped so one bad JWK cannot take the others down.
pub fn jwt_authorities_from_proto(authorities: &[node::JwtAuthority]) -> Vec<JwtAuthority> {
    authorities
        .iter()
        .filter_map(|a| match jwt_authority_from_proto(a) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::warn!(kid = a.kid, %error, "ignoring malformed JWT authority");
                None
            }
        })
        .collect()
}

fn jwt_authority_from_proto(a: &node::JwtAuthority) -> Result<JwtAuthority, String> {
    let jwk: Jwk = serde_json::from_str(&a.jwk).map_err(|e| format!("not a JWK: {e}"))?;
    let kid = match (a.kid.as_str(), jwk.kid.as_deref()) {
        ("", None | Some("")) => return Err("no kid".into()),
        ("", Some(k)) => k.to_owned(),
        (k, None) => k.to_owned(),
        (k, Some(j)) if k == j => k.to_owned(),
        (k, Some(j)) => return Err(format!("kid {k:?} does not match the JWK's kid {j:?}")),
    };
    if let Some(use_) = jwk.use_.as_deref().filter(|u| *u != "jwt-svid") {
        return Err(format!("JWK use is {use_:?}, not \"jwt-svid\""));
    }
    let public_key = JwtPublicKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(JwtAuthority {
        kid,
        jwk,
        public_key,
        expires_at: a.expires_at,
    })
}

/// Parses an entry off the wire into the domain type (edges parse once).
pub fn entry_from_proto(e: Entry) -> Result<RegistrationEntry, String> {
    let spiffe_id = SpiffeId::parse_with_path(&e.spiffe_id).map_err(|x| x.to_string())?;
    let parent_id = SpiffeId::parse(&e.parent_id).map_err(|x| x.to_string())?;
    let selectors = e
        .selectors
        .iter()
        .map(|s| Selector::new(&s.r#type, &s.value))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|x| x.to_string())?;
    let ttl = |secs: u32| (secs > 0).then(|| Duration::from_secs(u64::from(secs)));
    let federates_with = federates_with_from_names(&e.id, &spiffe_id, &e.federates_with);
    Ok(RegistrationEntry {
        id: e.id,
        spiffe_id,
        parent_id,
        selectors: signet_core::entry::normalize_selectors(selectors),
        x509_svid_ttl: ttl(e.x509_svid_ttl),
        jwt_svid_ttl: ttl(e.jwt_svid_ttl),
        dns_names: e.dns_names,
        hint: e.hint,
        admin: e.admin,
        downstream: e.downstream,
        revision: e.revision,
        federates_with,
    })
}

/// The trust domains an entry federates with, sorted and without
/// duplicates. A malformed name, or the entry's own trust domain (its own
/// bundle is always served), is dropped with a warning: the entry itself
/// still matters to its workloads. The cache file's entries are read the
/// same way.
pub fn federates_with_from_names(
    entry_id: &str,
    spiffe_id: &SpiffeId,
    names: &[String],
) -> Vec<TrustDomain> {
    let mut out: Vec<TrustDomain> = names
        .iter()
        .filter_map(|name| match TrustDomain::new(name) {
            Ok(td) if &td == spiffe_id.trust_domain() => {
                tracing::warn!(entry_id, trust_domain = name, "an entry cannot federate with its own trust domain; ignoring it");
                None
            }
            Ok(td) => Some(td),
            Err(error) => {
                tracing::warn!(entry_id, trust_domain = name, %error, "ignoring a malformed trust domain the entry federates with");
                None
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
