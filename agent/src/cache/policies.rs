//! The Cedar authorization policies the agent holds, as the server sent
//! them, and the engine built from them: every local decision (ext_authz,
//! `api authorize`, services fetching the set) reads this.

use std::collections::BTreeMap;

use signet_authz::{Engine, Policies, PolicySource};

/// Policy sources by name, and the engine over all of them.
#[derive(Debug, Clone, Default)]
pub struct HeldPolicies {
    pub sources: BTreeMap<String, String>,
    pub engine: Engine,
}

impl PartialEq for HeldPolicies {
    fn eq(&self, other: &Self) -> bool {
        self.sources == other.sources
    }
}

impl Eq for HeldPolicies {}

impl HeldPolicies {
    /// Takes `next`; a source that does not parse here keeps the version
    /// held before it (or is left out), so an invalid policy never replaces
    /// a valid one even if one slipped past the server.
    pub fn replaced_by(&self, mut next: BTreeMap<String, String>) -> Self {
        let mut refused = Vec::new();
        for (name, text) in &next {
            if self.sources.get(name) == Some(text) {
                continue;
            }
            if let Err(errors) = signet_authz::parse_source(name, text, None) {
                for e in &errors {
                    tracing::warn!(policy = name, error = %e, "refusing an authorization policy that does not validate; keeping the previous one");
                }
                refused.push(name.clone());
            }
        }
        for name in refused {
            match self.sources.get(&name) {
                Some(old) => next.insert(name, old.clone()),
                None => next.remove(&name),
            };
        }
        let list: Vec<PolicySource> = next
            .iter()
            .map(|(name, text)| PolicySource {
                name: name.clone(),
                text: text.clone(),
            })
            .collect();
        match Policies::build(&list) {
            Ok(policies) => Self {
                sources: next,
                engine: Engine::new(policies),
            },
            Err(errors) => {
                for e in &errors {
                    tracing::warn!(error = %e, "authorization policies refused; keeping the previous set");
                }
                self.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect()
    }

    const READ: &str = "permit(principal, action == Signet::Action::\"read\", resource);";
    const WRITE: &str = "permit(principal, action == Signet::Action::\"write\", resource);";

    #[test]
    fn an_invalid_source_keeps_the_one_held_before() {
        let held = HeldPolicies::default().replaced_by(set(&[("a", READ)]));
        assert_eq!(held.engine.policies().len(), 1);
        let next = held.replaced_by(set(&[("a", "permit(oops"), ("b", WRITE)]));
        assert_eq!(next.sources, set(&[("a", READ), ("b", WRITE)]));
        assert_eq!(next.engine.policies().len(), 2);
        let fresh = HeldPolicies::default().replaced_by(set(&[("bad", "nonsense")]));
        assert!(fresh.sources.is_empty());
        assert!(fresh.engine.policies().is_empty());
    }
}
