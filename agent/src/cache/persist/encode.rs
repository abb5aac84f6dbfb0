//! Writes the cache document straight from the snapshot: borrowed fields,
//! base64 made per value as it is written. Building the whole document first
//! (owned copies of every entry, then the JSON bytes) cost about three times
//! the cache's size in memory at each write, which the allocator then kept.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Write;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use signet_core::bundle::Bundle;
use signet_core::clock::unix_seconds;
use signet_core::jwt::Jwk;
use signet_core::{Selector, SpiffeId, TrustDomain};

use super::{PersistError, VERSION};
use crate::cache::state::{CachedEntry, Snapshot, Svid};

/// The same fields, in the same order, as `CacheFile`, which reads it back.
#[derive(Serialize)]
struct CacheDoc<'a> {
    version: u32,
    trust_domain: &'a str,
    revision: u64,
    bundle: Base64List<'a>,
    jwt_keys: Vec<Jwk>,
    crls: Base64List<'a>,
    revoked_x509_serials: Vec<(&'a str, i64)>,
    revoked_jwt_ids: Vec<(&'a str, i64)>,
    tainted_x509: Vec<&'a str>,
    tainted_jwt_kids: Vec<&'a str>,
    entries: Entries<'a>,
    federated_bundles: Vec<FederatedDoc<'a>>,
    policies: Vec<(&'a str, &'a str)>,
}

#[derive(Serialize)]
struct EntryDoc<'a> {
    id: &'a str,
    spiffe_id: Shown<'a, SpiffeId>,
    parent_id: Shown<'a, SpiffeId>,
    selectors: ShownList<'a, Selector>,
    x509_svid_ttl: Option<u64>,
    jwt_svid_ttl: Option<u64>,
    dns_names: &'a [String],
    hint: &'a str,
    admin: bool,
    downstream: bool,
    revision: u64,
    svid: Option<SvidDoc<'a>>,
    federates_with: ShownList<'a, TrustDomain>,
}

/// A federated bundle whole, JWT keys with their kid and expiry, so a
/// restarted agent serves and validates with it as it did before.
#[derive(Serialize)]
struct FederatedDoc<'a> {
    trust_domain: &'a str,
    sequence: u64,
    x509_authorities: Base64List<'a>,
    jwt_authorities: Vec<JwtAuthorityDoc<'a>>,
}

#[derive(Serialize)]
struct JwtAuthorityDoc<'a> {
    kid: &'a str,
    jwk: &'a Jwk,
    expires_at: i64,
}

#[derive(Serialize)]
struct SvidDoc<'a> {
    chain: Base64List<'a>,
    key_pkcs8: Base64<'a>,
    authority_id: &'a str,
}

struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(self.0))
    }
}

struct Base64List<'a>(&'a [Vec<u8>]);

impl Serialize for Base64List<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|v| Base64(v)))
    }
}

struct Shown<'a, T>(&'a T);

impl<T: Display> Serialize for Shown<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

struct ShownList<'a, T>(&'a [T]);

impl<T: Display> Serialize for ShownList<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Shown))
    }
}

struct Entries<'a>(&'a Snapshot);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.entries.len()))?;
        for cached in self.0.entries.values() {
            seq.serialize_element(&entry_doc(cached))?;
        }
        seq.end()
    }
}

fn entry_doc(c: &CachedEntry) -> EntryDoc<'_> {
    let e = &c.entry;
    EntryDoc {
        id: &e.id,
        spiffe_id: Shown(&e.spiffe_id),
        parent_id: Shown(&e.parent_id),
        selectors: ShownList(&e.selectors),
        x509_svid_ttl: e.x509_svid_ttl.map(|d| d.as_secs()),
        jwt_svid_ttl: e.jwt_svid_ttl.map(|d| d.as_secs()),
        dns_names: &e.dns_names,
        hint: &e.hint,
        admin: e.admin,
        downstream: e.downstream,
        revision: e.revision,
        svid: c.svid.as_deref().map(svid_doc),
        federates_with: ShownList(&e.federates_with),
    }
}

fn svid_doc(s: &Svid) -> SvidDoc<'_> {
    SvidDoc {
        chain: Base64List(&s.x509.chain),
        key_pkcs8: Base64(&s.key_pkcs8),
        authority_id: &s.x509.authority_id,
    }
}

/// Writes the JSON document for `snapshot` to `out`.
pub fn encode_to(snapshot: &Snapshot, out: impl Write) -> Result<(), PersistError> {
    let mut jwt_keys: Vec<Jwk> = snapshot
        .jwt_bundles
        .get(&snapshot.trust_domain)
        .map(|keys| {
            keys.iter()
                .map(|(kid, key)| Jwk::from_public_key(key, "jwt-svid", Some(kid.clone())))
                .collect()
        })
        .unwrap_or_default();
    jwt_keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    let doc = CacheDoc {
        version: VERSION,
        trust_domain: snapshot.trust_domain.as_str(),
        revision: snapshot.revision,
        bundle: Base64List(snapshot.bundle.as_deref().map_or(&[], Vec::as_slice)),
        jwt_keys,
        crls: Base64List(&snapshot.crls),
        revoked_x509_serials: expiries(&snapshot.revocations.x509_serials),
        revoked_jwt_ids: expiries(&snapshot.revocations.jwt_ids),
        tainted_x509: snapshot.tainted.x509.iter().map(String::as_str).collect(),
        tainted_jwt_kids: snapshot
            .tainted
            .jwt_kids
            .iter()
            .map(String::as_str)
            .collect(),
        entries: Entries(snapshot),
        federated_bundles: snapshot
            .federated_bundles
            .values()
            .map(|b| federated_doc(b))
            .collect(),
        policies: snapshot
            .policies
            .sources
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect(),
    };
    serde_json::to_writer(out, &doc).map_err(|e| PersistError::Encode(e.to_string()))
}

fn federated_doc(b: &Bundle) -> FederatedDoc<'_> {
    FederatedDoc {
        trust_domain: b.trust_domain.as_str(),
        sequence: b.sequence,
        x509_authorities: Base64List(&b.x509_authorities),
        jwt_authorities: b
            .jwt_authorities
            .iter()
            .map(|a| JwtAuthorityDoc {
                kid: &a.kid,
                jwk: &a.jwk,
                expires_at: a.expires_at,
            })
            .collect(),
    }
}

fn expiries(m: &BTreeMap<String, SystemTime>) -> Vec<(&str, i64)> {
    m.iter()
        .map(|(k, t)| (k.as_str(), unix_seconds(*t)))
        .collect()
}

/// A writer that only hashes: tells whether the document changed without
/// holding it.
#[derive(Default)]
pub struct Digest(sha2::Sha256);

impl Digest {
    pub fn finish(self) -> [u8; 32] {
        use sha2::Digest as _;
        self.0.finalize().into()
    }
}

impl Write for Digest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
