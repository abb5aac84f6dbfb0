//! The immutable snapshot the cache manager publishes: the trust bundle, its
//! JWT keys, the bundles of federated trust domains, CRLs, revocations,
//! tainted authorities and, per entry this agent holds, the entry and its
//! current SVID (if issued).
//! Readers get an `Arc` through a watch channel and never lock.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use signet_core::bundle::Bundle;
use signet_core::jwt::JwtBundles;
use signet_core::{RegistrationEntry, Selector, TrustDomain, X509Svid};

use super::policies::HeldPolicies;

/// An X.509-SVID held for a workload entry, with its private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Svid {
    pub x509: X509Svid,
    /// PKCS#8 DER; never logged, wiped when dropped.
    pub key_pkcs8: zeroize::Zeroizing<Vec<u8>>,
}

impl Svid {
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.x509.is_valid_at(now)
    }
}

impl std::fmt::Debug for Svid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Svid")
            .field("x509", &self.x509)
            .finish_non_exhaustive()
    }
}

/// An entry's id, allocated once when the entry arrives and shared by every
/// map and snapshot that names it (ten copies of each id at 10k entries
/// were 4 MB of the agent's heap).
pub type EntryId = Arc<str>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEntry {
    /// Shared with the rotation task: a snapshot copies no entry.
    pub entry: Arc<RegistrationEntry>,
    pub svid: Option<Arc<Svid>>,
}

/// Credentials the server revoked, each until it would have expired anyway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    /// X.509 serial (lowercase hex) → the certificate's notAfter.
    pub x509_serials: BTreeMap<String, SystemTime>,
    /// JWT `jti` → the token's `exp`.
    pub jwt_ids: BTreeMap<String, SystemTime>,
}

impl Revocations {
    pub fn is_jti_revoked(&self, jti: &str, now: SystemTime) -> bool {
        self.jwt_ids.get(jti).is_some_and(|exp| now < *exp)
    }

    pub fn is_serial_revoked(&self, serial_hex: &str, now: SystemTime) -> bool {
        // Leading zero bytes differ between encoders; compare without them.
        self.x509_serials
            .get(serial_hex.trim_start_matches('0'))
            .is_some_and(|exp| now < *exp)
    }

    /// Forgets entries whose credential has expired; true if any went.
    pub fn prune(&mut self, now: SystemTime) -> bool {
        let before = self.x509_serials.len() + self.jwt_ids.len();
        self.x509_serials.retain(|_, exp| now < *exp);
        self.jwt_ids.retain(|_, exp| now < *exp);
        before != self.x509_serials.len() + self.jwt_ids.len()
    }
}

/// Authorities whose credentials must be re-issued at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tainted {
    /// X.509 authority ids: lowercase hex SHA-256 of the CA certificate DER.
    pub x509: BTreeSet<String>,
    pub jwt_kids: BTreeSet<String>,
}

/// Another trust domain's bundle, by its name: one per trust domain, never
/// the agent's own, never merged with another (SPIFFE Federation).
pub type FederatedBundles = BTreeMap<TrustDomain, Arc<Bundle>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub trust_domain: TrustDomain,
    /// DER CA certificates; `None` until the first sync snapshot arrived.
    pub bundle: Option<Arc<Vec<Vec<u8>>>>,
    /// The own trust domain → kid → key, parsed once when the bundle
    /// arrived. Federated keys are not here: each caller may use only those
    /// of the trust domains its entries federate with.
    pub jwt_bundles: Arc<JwtBundles>,
    /// Bundles of the trust domains entries federate with.
    pub federated_bundles: Arc<FederatedBundles>,
    /// Cedar authorization policies and the engine over them.
    pub policies: Arc<HeldPolicies>,
    /// Keyed by entry id.
    pub entries: BTreeMap<EntryId, CachedEntry>,
    /// DER CRLs from the server, for the Workload API `crl` fields.
    pub crls: Arc<Vec<Vec<u8>>>,
    pub revocations: Arc<Revocations>,
    pub tainted: Arc<Tainted>,
    /// The last sync revision applied (persisted so a restart resumes).
    pub revision: u64,
}

impl Snapshot {
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            bundle: None,
            jwt_bundles: Arc::default(),
            federated_bundles: Arc::default(),
            policies: Arc::default(),
            entries: BTreeMap::new(),
            crls: Arc::default(),
            revocations: Arc::default(),
            tainted: Arc::default(),
            revision: 0,
        }
    }

    /// Ready to serve workloads once the server has sent its first sync.
    pub fn is_ready(&self) -> bool {
        self.bundle.is_some()
    }

    /// Entries whose selectors are all among the workload's.
    pub fn matching<'a>(
        &'a self,
        selectors: &'a HashSet<Selector>,
    ) -> impl Iterator<Item = &'a CachedEntry> + 'a {
        self.entries
            .values()
            .filter(move |c| c.entry.matches(selectors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, selectors: &[&str]) -> CachedEntry {
        CachedEntry {
            entry: Arc::new(crate::test_support::entry(
                id,
                "spiffe://example.org/w",
                "spiffe://example.org/agent",
                selectors,
            )),
            svid: None,
        }
    }

    #[test]
    fn matching_needs_every_selector_of_the_entry() {
        let mut s = Snapshot::empty(TrustDomain::new("example.org").unwrap());
        assert!(!s.is_ready());
        s.entries.insert("a".into(), entry("a", &["unix:uid:1"]));
        s.entries
            .insert("b".into(), entry("b", &["unix:uid:1", "unix:gid:2"]));
        let caller: HashSet<Selector> = ["unix:uid:1".parse().unwrap()].into();
        let ids: Vec<_> = s.matching(&caller).map(|c| c.entry.id.clone()).collect();
        assert_eq!(ids, vec!["a".to_string()]);
    }
}
