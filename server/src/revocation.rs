//! Per-credential revocation: the revoked X.509 serials published as one DER
//! CRL per issuing authority (signed by that CA), and the revoked jtis. The
//! CRLs are rebuilt whenever the list changes and kept here for Sync.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::SystemTime;

use signet_core::clock::{from_unix_seconds, unix_seconds};

use crate::ca::{CaError, CertificateAuthority};
use crate::datastore::{DataStore, DataStoreError, Revocation, RevokedKind};

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error(transparent)]
    DataStore(#[from] DataStoreError),
    #[error(transparent)]
    Ca(#[from] CaError),
}

#[derive(Debug, Default)]
struct Cached {
    crls: Vec<Vec<u8>>,
    number: u64,
    /// Revoked X.509 serials (lowercase hex), for agent authentication.
    x509: HashSet<String>,
}

#[derive(Debug, Default)]
pub struct Revocations {
    cached: Mutex<Cached>,
}

/// Lowercase hex without separators or leading zero bytes beyond one.
pub fn normalize_serial(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    })
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current CRLs, DER, one per authority with revoked serials.
    pub fn crls(&self) -> Vec<Vec<u8>> {
        self.lock().crls.clone()
    }

    /// Whether the X.509-SVID with this serial (lowercase hex) is revoked.
    pub fn is_x509_revoked(&self, serial_hex: &str) -> bool {
        self.lock().x509.contains(serial_hex)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rebuilds the CRLs from the datastore. Returns whether they changed.
    pub async fn refresh(
        &self,
        ds: &dyn DataStore,
        ca: &CertificateAuthority,
    ) -> Result<bool, RevocationError> {
        let now = ca.now();
        let all = ds.revocations(unix_seconds(now)).await?;
        let mut by_authority: BTreeMap<&str, Vec<&Revocation>> = BTreeMap::new();
        for r in all.iter().filter(|r| r.kind == RevokedKind::X509) {
            by_authority.entry(&r.authority_id).or_default().push(r);
        }
        // Increasing across restarts: never below the clock in milliseconds.
        let number = {
            let c = self.lock();
            let ms = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            (c.number + 1).max(ms)
        };
        let mut crls = Vec::new();
        for (authority, list) in by_authority {
            let serials: Vec<(String, SystemTime)> = list
                .iter()
                .map(|r| (r.id.clone(), from_unix_seconds(r.revoked_at)))
                .collect();
            let next_update = list
                .iter()
                .map(|r| r.expires_at)
                .max()
                .map(from_unix_seconds)
                .unwrap_or(now);
            if let Some(der) = ca.sign_crl(authority, &serials, number, next_update)? {
                crls.push(der);
            }
        }
        let x509 = all
            .iter()
            .filter(|r| r.kind == RevokedKind::X509)
            .map(|r| r.id.clone())
            .collect();
        let mut c = self.lock();
        let changed = c.crls.len() != crls.len() || !crls.is_empty() || !c.crls.is_empty();
        c.crls = crls;
        c.number = number;
        c.x509 = x509;
        Ok(changed)
    }
}

#[cfg(test)]
mod tests;
