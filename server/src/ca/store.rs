//! The authorities in the datastore (state, times, certificates; shared by
//! every server of an HA group later) and their private keys in the key
//! manager, loaded together at start.

use std::sync::Arc;

use signet_core::clock::{from_unix_seconds, unix_seconds};
use signet_core::TrustDomain;

use super::authorities::Authorities;
use super::key_manager::KeyManager;
use super::keys::{load_jwt, load_x509};
use super::rotation::{HasMeta, Meta};
use super::{AuthorityKind, CaError};
use crate::datastore::{AuthorityRecord, DataStore};

fn record<T: HasMeta>(kind: AuthorityKind, a: &T, certificate: Option<Vec<u8>>) -> AuthorityRecord {
    let m = a.meta();
    AuthorityRecord {
        kind,
        id: m.id.clone(),
        state: m.state,
        tainted: m.tainted,
        not_before: unix_seconds(m.not_before),
        not_after: unix_seconds(m.not_after),
        certificate,
    }
}

/// What the datastore keeps of `a`, in order.
pub fn records(a: &Authorities) -> Vec<AuthorityRecord> {
    let x509 = a
        .x509
        .iter()
        .map(|x| record(AuthorityKind::X509, x, Some(x.cert_der.clone())));
    let jwt = a.jwt.iter().map(|j| record(AuthorityKind::Jwt, j, None));
    x509.chain(jwt).collect()
}

/// The stored authorities, each with its key.
pub struct Loaded {
    pub authorities: Authorities,
    pub sequence: u64,
    /// Some stored authority could not be used (its key is gone, or it is
    /// of another trust domain): the store must be rewritten.
    pub dropped: bool,
}

/// Loads the stored authorities and their keys (on the blocking pool). An
/// authority whose key is missing, or a CA of another trust domain, is
/// dropped with a warning: the schedule replaces it.
pub async fn load(
    ds: &dyn DataStore,
    keys: Arc<dyn KeyManager>,
    td: &TrustDomain,
) -> Result<Loaded, CaError> {
    let stored = ds.load_authorities().await.map_err(CaError::Store)?;
    let td = td.clone();
    let sequence = stored.sequence;
    tokio::task::spawn_blocking(move || {
        let mut out = Authorities::default();
        let mut dropped = false;
        for r in stored.authorities {
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
                (AuthorityKind::X509, Some(cert)) => match load_x509(meta, cert, &key, &td)? {
                    Some(a) => out.x509.push(a),
                    None => {
                        tracing::warn!(id = %r.id, "X.509 authority of another trust domain; dropped");
                        dropped = true;
                    }
                },
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
            sequence,
            dropped,
        })
    })
    .await
    .map_err(|e| CaError::Key(format!("loading the authorities: {e}")))?
}
