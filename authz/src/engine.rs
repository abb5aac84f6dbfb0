//! Deciding: Cedar's authorizer over the policy set, default deny. A
//! decision names the policies that made it (the permits that allowed it,
//! or the forbids that denied it), and any policy that failed to evaluate.
//! Only the policies whose scope can match are evaluated (`index`).
//!
//! Decisions are cached per (principal, action, resource, context) only
//! when no policy reads an input that changes by itself between two equal
//! requests: the time, or the SVID lifetime left (see `cacheable`). A new
//! policy set is a new engine with an empty cache.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::policies::Policies;
use crate::request::{AuthzRequest, Principal, RequestError};
use index::ScopeIndex;

/// Decisions kept at most; the cache starts over when full.
const CACHE_ENTRIES: usize = 4096;

/// Everything a decision depends on once time and SVID lifetime are not
/// read by any policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    principal: Principal,
    action: String,
    resource: String,
    source_address: Option<IpAddr>,
    federated: bool,
    /// The service's attributes as canonical JSON (keys sorted).
    attributes: String,
}

impl CacheKey {
    fn of(r: &AuthzRequest) -> Self {
        Self {
            principal: r.principal.clone(),
            action: r.action.clone(),
            resource: r.resource.clone(),
            source_address: r.source_address,
            federated: r.federated,
            attributes: serde_json::Value::Object(r.attributes.clone()).to_string(),
        }
    }
}

/// Whether no policy of `policies` can read the time or the SVID's
/// lifetime: they name neither, nor the context as a whole (`context ==
/// {...}` would compare the time too). Conservative: a mention in a string
/// or a comment also turns caching off.
fn cacheable(policies: &Policies) -> bool {
    policies.set.policies().all(|p| {
        let text = p.to_string();
        if text.contains("time") || text.contains("svid_remaining") {
            return false;
        }
        text.match_indices("context").all(|(at, _)| {
            let rest = text.get(at + "context".len()..).unwrap_or_default();
            rest.starts_with('.') || rest.starts_with('[') || rest.starts_with(" has ")
        })
    })
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allow: bool,
    /// The policies that decided (none: denied by default).
    pub policies: Vec<String>,
    /// Policies that could not be evaluated for this request (skipped).
    pub errors: Vec<String>,
}

/// A policy set ready to decide; cheap to clone and share.
#[derive(Clone, Default)]
pub struct Engine {
    policies: Arc<Policies>,
    index: Arc<ScopeIndex>,
    /// Set when decisions may be cached.
    cache: Option<Arc<Mutex<HashMap<CacheKey, Decision>>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("policies", &self.policies.len())
            .finish()
    }
}

impl Engine {
    pub fn new(policies: Policies) -> Self {
        let cache = cacheable(&policies).then(Arc::default);
        Self {
            index: Arc::new(ScopeIndex::new(&policies.set)),
            policies: Arc::new(policies),
            cache,
        }
    }

    /// Whether this set's decisions are cached.
    pub fn caches(&self) -> bool {
        self.cache.is_some()
    }

    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    pub fn decide(&self, request: &AuthzRequest) -> Result<Decision, RequestError> {
        let Some(cache) = &self.cache else {
            return self.evaluate(request);
        };
        let key = CacheKey::of(request);
        if let Some(d) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(d);
        }
        let decision = self.evaluate(request)?;
        if let Ok(mut c) = cache.lock() {
            if c.len() >= CACHE_ENTRIES {
                c.clear();
            }
            c.insert(key, decision.clone());
        }
        Ok(decision)
    }

    fn evaluate(&self, request: &AuthzRequest) -> Result<Decision, RequestError> {
        let (cedar, entities) = request.to_cedar()?;
        Ok(self.index.decide(&cedar, &entities))
    }
}

mod index;
#[cfg(test)]
mod tests;
