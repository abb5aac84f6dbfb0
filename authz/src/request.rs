//! One authorization question in Signet's terms, and its Cedar form: the
//! principal workload and its trust domain as entities, the action and
//! resource by id, the context checked against the schema.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use serde_json::{Map, Value};
use signet_core::SpiffeId;

use crate::schema::{schema, ACTION, ACTIONS, RESOURCE, TRUST_DOMAIN, WORKLOAD};

/// The context keys Signet fills in itself: a service cannot set them.
pub const COMPUTED: [&str; 4] = ["time", "source_address", "federated", "svid_remaining_secs"];

/// A workload, by its SPIFFE ID, with what its registration entries say of
/// it (nothing for a workload of another trust domain, or one this host
/// holds no entry of).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub spiffe_id: SpiffeId,
    pub selectors: Vec<String>,
    pub hints: Vec<String>,
}

impl Principal {
    pub fn new(spiffe_id: SpiffeId) -> Self {
        Self {
            spiffe_id,
            selectors: Vec::new(),
            hints: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthzRequest {
    pub principal: Principal,
    /// `read`, `write` or `delete`.
    pub action: String,
    /// A service-defined id.
    pub resource: String,
    pub time: SystemTime,
    pub source_address: Option<IpAddr>,
    /// The principal's SVID is of a federated trust domain.
    pub federated: bool,
    /// What the principal's SVID has left, when known.
    pub svid_remaining: Option<Duration>,
    /// Attributes the service supplies (`zone`, `posture`, `labels`).
    pub attributes: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("action {0:?}: not one of read, write, delete")]
    Action(String),
    #[error("context attribute {0:?} is set by Signet, not by the caller")]
    Computed(String),
    #[error("context: {0}")]
    Context(String),
    #[error("{0}")]
    Entity(String),
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, RequestError> {
    let t = EntityTypeName::from_str(type_name)
        .map_err(|e| RequestError::Entity(format!("{type_name}: {e}")))?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

/// `2026-12-06T16:40:00.123Z`: a form Cedar's `datetime` takes.
fn cedar_time(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn strings(values: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        values
            .iter()
            .map(|s| RestrictedExpression::new_string(s.clone())),
    )
}

impl AuthzRequest {
    /// The Cedar request and the entities it needs.
    pub(crate) fn to_cedar(&self) -> Result<(Request, Entities), RequestError> {
        if !ACTIONS.contains(&self.action.as_str()) {
            return Err(RequestError::Action(self.action.clone()));
        }
        let id = &self.principal.spiffe_id;
        let td = id.trust_domain().as_str();
        let principal = uid(WORKLOAD, &id.to_string())?;
        let trust_domain = uid(TRUST_DOMAIN, td)?;
        let action = uid(ACTION, &self.action)?;
        let resource = uid(RESOURCE, &self.resource)?;

        let segments: Vec<String> = id
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let attrs = HashMap::from([
            (
                "spiffe_id".to_owned(),
                RestrictedExpression::new_string(id.to_string()),
            ),
            (
                "trust_domain".to_owned(),
                RestrictedExpression::new_string(td.to_owned()),
            ),
            (
                "path".to_owned(),
                RestrictedExpression::new_string(id.path().to_owned()),
            ),
            ("segments".to_owned(), strings(&segments)),
            ("selectors".to_owned(), strings(&self.principal.selectors)),
            ("hints".to_owned(), strings(&self.principal.hints)),
        ]);
        let workload = Entity::new(
            principal.clone(),
            attrs,
            HashSet::from([trust_domain.clone()]),
        )
        .map_err(|e| RequestError::Entity(e.to_string()))?;
        let entities = Entities::from_entities(
            [
                workload,
                Entity::new_no_attrs(trust_domain, HashSet::new()),
                Entity::new_no_attrs(resource.clone(), HashSet::new()),
            ],
            Some(schema()),
        )
        .map_err(|e| RequestError::Entity(e.to_string()))?;

        let mut context = Map::new();
        for (k, v) in &self.attributes {
            if COMPUTED.contains(&k.as_str()) {
                return Err(RequestError::Computed(k.clone()));
            }
            context.insert(k.clone(), v.clone());
        }
        context.insert("time".into(), cedar_time(self.time).into());
        if let Some(ip) = self.source_address {
            context.insert("source_address".into(), ip.to_string().into());
        }
        context.insert("federated".into(), self.federated.into());
        let remaining = self.svid_remaining.map_or(0, |d| d.as_secs());
        context.insert(
            "svid_remaining_secs".into(),
            i64::try_from(remaining).unwrap_or(i64::MAX).into(),
        );
        let context = Context::from_json_value(Value::Object(context), Some((schema(), &action)))
            .map_err(|e| RequestError::Context(e.to_string()))?;
        let request = Request::new(principal, action, resource, context, Some(schema()))
            .map_err(|e| RequestError::Context(e.to_string()))?;
        Ok((request, entities))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_in_a_form_cedar_takes() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_575_200_042);
        assert_eq!(cedar_time(t), "2026-12-06T16:40:00.042Z");
    }
}
