//! The authorities in the datastore (state, times, certificates and public
//! keys; every server of an HA group stores its own there) and this
//! server's private keys in its key manager, loaded together.

use std::sync::Arc;

use signet_core::clock::{from_unix_seconds, unix_seconds};
use signet_core::x509::split_der_certs;
use signet_core::TrustDomain;

use super::authorities::Authorities;
use super::key_manager::KeyManager;
use super::keys::{load_jwt, load_x509};
use super::rotation::{HasMeta, Meta};
use super::upstream::SignedCa;
use super::{AuthorityKind, CaError};
use crate::datastore::{AuthorityRecord, DataStore};

fn record<T: HasMeta>(kind: AuthorityKind, a: &T, server_id: &str) -> AuthorityRecord {
    let m = a.meta();
    AuthorityRecord {
        kind,
        id: m.id.clone(),
        server_id: server_id.to_owned(),
        state: m.state,
        tainted: m.tainted,
        not_before: unix_seconds(m.not_before),
        not_after: unix_seconds(m.not_after),
        certificate: None,
        public_key: None,
        upstream_root: None,
        upstream_chain: None,
    }
}

/// What the datastore keeps of `a` (this server's), in order.
pub fn records(a: &Authorities, server_id: &str) -> Vec<AuthorityRecord> {
    let x509 = a.x509.iter().map(|x| AuthorityRecord {
        certificate: Some(x.cert_der.clone()),
        upstream_root: joined(&x.upstream_roots),
        upstream_chain: joined(&x.upstream_chain),
        ..record(AuthorityKind::X509, x, server_id)
    });
    let jwt = a.jwt.iter().map(|j| AuthorityRecord {
        // A JWK always serializes; an empty key would only hide this one.
        public_key: serde_json::to_string(&j.signer.jwk()).ok(),
        ..record(AuthorityKind::Jwt, j, server_id)
    });
    x509.chain(jwt).collect()
}

/// Certificates as one column holds them: concatenated DER, none as NULL.
fn joined(certs: &[Vec<u8>]) -> Option<Vec<u8>> {
    (!certs.is_empty()).then(|| certs.concat())
}

/// The certificates of a chain column.
fn split(column: Option<Vec<u8>>, id: &str) -> Result<Vec<Vec<u8>>, CaError> {
    column
        .map(|der| split_der_certs(&der))
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            CaError::Key(format!(
                "X.509 authority {id}: its stored upstream certificates: {e}"
            ))
        })
}

/// The stored authorities: this server's with their keys, the others' as
/// stored.
pub struct Loaded {
    pub authorities: Authorities,
    pub peers: Vec<AuthorityRecord>,
    pub sequence: u64,
    pub revision: u64,
    /// Some stored authority could not be used (its key is gone, or it is
    /// of another trust domain): the store must be rewritten.
    pub dropped: bool,
}

/// Loads the stored authorities and this server's keys (on the blocking
/// pool). An authority of ours whose key is missing, or a CA of another
/// trust domain, is dropped with a warning: the schedule replaces it.
pub async fn load(
    ds: &dyn DataStore,
    keys: Arc<dyn KeyManager>,
    td: &TrustDomain,
    server_id: &str,
) -> Result<Loaded, CaError> {
    let stored = ds.load_authorities().await.map_err(CaError::Store)?;
    let td = td.clone();
    let (sequence, revision) = (stored.sequence, stored.revision);
    let (own, peers): (Vec<_>, Vec<_>) = stored
        .authorities
        .into_iter()
        .partition(|a| a.server_id == server_id);
    tokio::task::spawn_blocking(move || {
        let mut out = Authorities::default();
        let mut dropped = false;
        for r in own {
            let meta = Meta {
                id: r.id.clone(),
                state: r.state,
                tainted: r.tainted,
                not_before: from_unix_seconds(r.not_before),
                not_after: from_unix_seconds(r.not_after),
            };
            let Some(key) = keys.load(r.kind, &r.id)? else {
                tracing::warn!(kind = r.kind.as_str(), id = %r.id, "authority key missing; dropped");
                dropped = true;
                continue;
            };
            match (r.kind, r.certificate) {
                (AuthorityKind::X509, Some(cert)) => {
                    let upstream = SignedCa {
                        chain: split(r.upstream_chain, &r.id)?,
                        roots: split(r.upstream_root, &r.id)?,
                    };
                    match load_x509(meta, cert, upstream, &key, &td)? {
                    Some(a) => out.x509.push(a),
                    None => {
                        tracing::warn!(id = %r.id, "X.509 authority of another trust domain; dropped");
                        dropped = true;
                    }
                }},
                (AuthorityKind::X509, None) => {
                    return Err(CaError::Key(format!(
                        "X.509 authority {} has no certificate stored",
                        r.id
                    )))
                }
                (AuthorityKind::Jwt, _) => out.jwt.push(load_jwt(meta, &key)?),
            }
        }
        Ok(Loaded {
            authorities: out,
            peers,
            sequence,
            revision,
            dropped,
        })
    })
    .await
    .map_err(|e| CaError::Key(format!("loading the authorities: {e}")))?
}
