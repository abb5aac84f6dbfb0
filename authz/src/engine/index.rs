//! The policy set split by scope, so a decision evaluates only the
//! policies that can apply: those naming this principal (`principal ==`)
//! or this action (`action ==`), or both, and those naming neither. A
//! permit or forbid whose scope names another principal or action cannot
//! be satisfied, so leaving it out changes no decision; Cedar's rule is
//! then applied across the parts: a satisfied forbid anywhere denies, else
//! a satisfied permit anywhere allows, else deny.

use std::collections::HashMap;

use cedar_policy::{
    ActionConstraint, Authorizer, Entities, EntityUid, PolicySet, PrincipalConstraint, Request,
};

use super::Decision;

/// A part's key: the principal and action its policies require, if any.
type Scope = (Option<EntityUid>, Option<EntityUid>);

#[derive(Debug, Clone, Default)]
pub struct ScopeIndex {
    parts: HashMap<Scope, PolicySet>,
}

impl ScopeIndex {
    pub fn new(set: &PolicySet) -> Self {
        let mut parts: HashMap<Scope, PolicySet> = HashMap::new();
        for p in set.policies() {
            let principal = match p.principal_constraint() {
                PrincipalConstraint::Eq(uid) => Some(uid),
                _ => None,
            };
            let action = match p.action_constraint() {
                ActionConstraint::Eq(uid) => Some(uid),
                _ => None,
            };
            // Ids are unique in `set`, so adding to a part cannot fail.
            let _ = parts.entry((principal, action)).or_default().add(p.clone());
        }
        Self { parts }
    }

    /// The parts that can apply to `principal` doing `action`.
    fn parts<'a>(
        &'a self,
        principal: &EntityUid,
        action: &EntityUid,
    ) -> impl Iterator<Item = &'a PolicySet> + 'a {
        let keys = [
            (None, None),
            (Some(principal.clone()), None),
            (None, Some(action.clone())),
            (Some(principal.clone()), Some(action.clone())),
        ];
        keys.into_iter().filter_map(move |k| self.parts.get(&k))
    }

    pub fn decide(&self, request: &Request, entities: &Entities) -> Decision {
        let (Some(principal), Some(action)) = (request.principal(), request.action()) else {
            return Decision::default();
        };
        let authorizer = Authorizer::new();
        let (mut permits, mut forbids, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for set in self.parts(principal, action) {
            let response = authorizer.is_authorized(request, set, entities);
            let reasons = response.diagnostics().reason().map(ToString::to_string);
            // Allow: the permits that held. Deny: the forbids that held
            // (none when it is only that no permit held).
            if response.decision() == cedar_policy::Decision::Allow {
                permits.extend(reasons);
            } else {
                forbids.extend(reasons);
            }
            errors.extend(response.diagnostics().errors().map(ToString::to_string));
        }
        let allow = forbids.is_empty() && !permits.is_empty();
        let mut policies = if forbids.is_empty() { permits } else { forbids };
        policies.sort();
        Decision {
            allow,
            policies,
            errors,
        }
    }
}
