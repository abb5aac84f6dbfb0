//! Reads the cache document back. Every field is checked as it would be off
//! the wire; what does not parse is skipped (the server sends it again), and
//! fields added since the first version default to empty, so a file an older
//! agent wrote still loads.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use signet_core::bundle::{Bundle, JwtAuthority};
use signet_core::clock::from_unix_seconds;
use signet_core::jwt::{Jwk, JwtPublicKey};
use signet_core::x509::cert_info;
use signet_core::{RegistrationEntry, Selector, SpiffeId, TrustDomain, X509Svid};

use super::{Restored, RestoredSvid, VERSION};
use crate::cache::state::{Revocations, Svid, Tainted};
use crate::sync::federates_with_from_names;

#[derive(Deserialize)]
struct CacheFile {
    version: u32,
    trust_domain: String,
    revision: u64,
    bundle: Vec<String>,
    jwt_keys: Vec<Jwk>,
    crls: Vec<String>,
    revoked_x509_serials: Vec<(String, i64)>,
    revoked_jwt_ids: Vec<(String, i64)>,
    tainted_x509: Vec<String>,
    tainted_jwt_kids: Vec<String>,
    entries: Vec<EntryFile>,
    /// Absent from files written before federation.
    #[serde(default)]
    federated_bundles: Vec<FederatedFile>,
    /// Absent from files written before authorization policies.
    #[serde(default)]
    policies: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct EntryFile {
    id: String,
    spiffe_id: String,
    parent_id: String,
    selectors: Vec<String>,
    x509_svid_ttl: Option<u64>,
    jwt_svid_ttl: Option<u64>,
    dns_names: Vec<String>,
    hint: String,
    admin: bool,
    downstream: bool,
    revision: u64,
    svid: Option<SvidFile>,
    /// Absent from files written before federation.
    #[serde(default)]
    federates_with: Vec<String>,
}

#[derive(Deserialize)]
struct SvidFile {
    chain: Vec<String>,
    key_pkcs8: String,
    authority_id: String,
}

#[derive(Deserialize)]
struct FederatedFile {
    trust_domain: String,
    sequence: u64,
    x509_authorities: Vec<String>,
    jwt_authorities: Vec<JwtAuthorityFile>,
}

#[derive(Deserialize)]
struct JwtAuthorityFile {
    kid: String,
    jwk: Jwk,
    expires_at: i64,
}

/// Parses a cache document. An entry or SVID that does not parse is
/// skipped (the server sends it again); a broken document is an error.
pub fn decode(bytes: &[u8], trust_domain: &TrustDomain) -> Result<Option<Restored>, String> {
    let file: CacheFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.version != VERSION {
        return Err(format!("unknown cache version {}", file.version));
    }
    if file.trust_domain != trust_domain.as_str() {
        tracing::warn!(
            cached = file.trust_domain,
            configured = %trust_domain,
            "cached SVIDs belong to another trust domain; ignoring them"
        );
        return Ok(None);
    }
    let der = |s: &String| B64.decode(s).map_err(|e| e.to_string());
    let ders = |v: &[String]| v.iter().map(der).collect::<Result<Vec<_>, _>>();
    let jwt_keys = file
        .jwt_keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.kid.clone()?;
            JwtPublicKey::from_jwk(jwk).ok().map(|k| (kid, k))
        })
        .collect();
    let revoked = |v: Vec<(String, i64)>| {
        v.into_iter()
            .map(|(k, t)| (k, from_unix_seconds(t)))
            .collect()
    };
    let federated_bundles = file
        .federated_bundles
        .into_iter()
        .filter_map(|b| {
            let name = b.trust_domain.clone();
            federated_from_file(b)
                .map_err(|error| {
                    tracing::warn!(
                        trust_domain = name,
                        error,
                        "skipping cached federated bundle"
                    )
                })
                .ok()
        })
        .collect();
    let entries = file
        .entries
        .into_iter()
        .filter_map(|e| {
            let id = e.id.clone();
            entry_from_file(e)
                .map_err(|error| tracing::warn!(entry_id = id, error, "skipping cached entry"))
                .ok()
        })
        .collect();
    Ok(Some(Restored {
        revision: file.revision,
        bundle: ders(&file.bundle)?,
        jwt_keys,
        federated_bundles,
        policies: file.policies,
        crls: ders(&file.crls)?,
        revocations: Revocations {
            x509_serials: revoked(file.revoked_x509_serials),
            jwt_ids: revoked(file.revoked_jwt_ids),
        },
        tainted: Tainted {
            x509: file.tainted_x509.into_iter().collect(),
            jwt_kids: file.tainted_jwt_kids.into_iter().collect(),
        },
        entries,
    }))
}

fn entry_from_file(e: EntryFile) -> Result<(RegistrationEntry, Option<RestoredSvid>), String> {
    let selectors = e
        .selectors
        .iter()
        .map(|s| s.parse::<Selector>().map_err(|x| x.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let spiffe_id = SpiffeId::parse_with_path(&e.spiffe_id).map_err(|x| x.to_string())?;
    let federates_with = federates_with_from_names(&e.id, &spiffe_id, &e.federates_with);
    let entry = RegistrationEntry {
        id: e.id,
        spiffe_id,
        parent_id: SpiffeId::parse(&e.parent_id).map_err(|x| x.to_string())?,
        selectors,
        x509_svid_ttl: e.x509_svid_ttl.map(Duration::from_secs),
        jwt_svid_ttl: e.jwt_svid_ttl.map(Duration::from_secs),
        dns_names: e.dns_names,
        hint: e.hint,
        admin: e.admin,
        downstream: e.downstream,
        revision: e.revision,
        federates_with,
    };
    let svid = match e.svid.map(svid_from_file).transpose() {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(entry_id = entry.id, error, "skipping cached SVID");
            None
        }
    };
    Ok((entry, svid))
}

fn svid_from_file(s: SvidFile) -> Result<RestoredSvid, String> {
    let chain = s
        .chain
        .iter()
        .map(|c| B64.decode(c).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let key_pkcs8 = B64.decode(&s.key_pkcs8).map_err(|e| e.to_string())?;
    let leaf = chain.first().ok_or("empty chain")?;
    signet_core::x509::key_matches_leaf(leaf, &key_pkcs8).map_err(|e| e.to_string())?;
    let info = cert_info(leaf).map_err(|e| e.to_string())?;
    Ok(RestoredSvid {
        not_before: info.not_before,
        svid: Svid {
            x509: X509Svid {
                spiffe_id: info.spiffe_id.ok_or("no SPIFFE ID in the leaf")?,
                chain,
                not_after: info.not_after,
                authority_id: s.authority_id.into(),
                serial_hex: info.serial_hex,
            },
            key_pkcs8: zeroize::Zeroizing::new(key_pkcs8),
        },
    })
}

fn federated_from_file(b: FederatedFile) -> Result<Bundle, String> {
    let jwt_authorities = b
        .jwt_authorities
        .into_iter()
        .map(|a| {
            let public_key = JwtPublicKey::from_jwk(&a.jwk).map_err(|e| e.to_string())?;
            Ok(JwtAuthority {
                kid: a.kid,
                jwk: a.jwk,
                public_key,
                expires_at: a.expires_at,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Bundle {
        trust_domain: TrustDomain::new(&b.trust_domain).map_err(|e| e.to_string())?,
        x509_authorities: b
            .x509_authorities
            .iter()
            .map(|c| B64.decode(c).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?,
        jwt_authorities,
        sequence: b.sequence,
    })
}
