//! Registration entries: which SPIFFE ID a workload gets, under which parent
//! (an agent or a node alias), when it shows which selectors.

use std::collections::HashSet;
use std::time::Duration;

use crate::{Selector, SpiffeId, TrustDomain};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationEntry {
    /// Server-assigned, opaque.
    pub id: String,
    pub spiffe_id: SpiffeId,
    pub parent_id: SpiffeId,
    /// Sorted and de-duplicated; never empty.
    pub selectors: Vec<Selector>,
    /// `None`: the server's default.
    pub x509_svid_ttl: Option<Duration>,
    pub jwt_svid_ttl: Option<Duration>,
    pub dns_names: Vec<String>,
    pub hint: String,
    pub admin: bool,
    pub downstream: bool,
    /// Bumped by the server on every change.
    pub revision: u64,
    /// Other trust domains whose bundles the entry's workloads get and
    /// trust; sorted, no duplicates, never the entry's own.
    pub federates_with: Vec<TrustDomain>,
}

impl RegistrationEntry {
    /// True when every selector of the entry is among the workload's.
    pub fn matches(&self, workload: &HashSet<Selector>) -> bool {
        !self.selectors.is_empty() && self.selectors.iter().all(|s| workload.contains(s))
    }
}

/// Sorts and de-duplicates selectors so equal sets compare equal.
pub fn normalize_selectors(mut selectors: Vec<Selector>) -> Vec<Selector> {
    selectors.sort();
    selectors.dedup();
    selectors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(selectors: &[&str]) -> RegistrationEntry {
        RegistrationEntry {
            id: "e1".into(),
            spiffe_id: SpiffeId::parse("spiffe://example.org/w").unwrap(),
            parent_id: SpiffeId::parse("spiffe://example.org/agent").unwrap(),
            selectors: selectors
                .iter()
                .map(|s| Selector::parse(s).unwrap())
                .collect(),
            x509_svid_ttl: None,
            jwt_svid_ttl: None,
            dns_names: vec![],
            hint: String::new(),
            admin: false,
            downstream: false,
            revision: 1,
            federates_with: vec![],
        }
    }

    fn set(selectors: &[&str]) -> HashSet<Selector> {
        selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn entry_matches_only_when_all_its_selectors_are_present() {
        let e = entry(&["unix:uid:1000", "unix:gid:1000"]);
        assert!(e.matches(&set(&["unix:uid:1000", "unix:gid:1000", "unix:user:me"])));
        assert!(!e.matches(&set(&["unix:uid:1000"])));
        assert!(!e.matches(&set(&[])));
    }

    #[test]
    fn entry_without_selectors_matches_nothing() {
        assert!(!entry(&[]).matches(&set(&["unix:uid:1"])));
    }
}
