//! One authorization question in Signet's terms, and its Cedar form: the
//! principal workload and its trust domain as entities, the action and
//! resource by id, the context typed as the schema declares it (a unit
//! test checks the two agree, so no request pays for the schema).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use serde_json::{Map, Value};
use signet_core::SpiffeId;

use crate::schema::{ACTION, ACTIONS, RESOURCE, TRUST_DOMAIN, WORKLOAD};

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

/// A service-supplied context attribute, typed as the schema declares it
/// (`zone`, `posture`: strings; `labels`: a set of strings); the computed
/// ones are refused, and any other name.
fn supplied(key: &str, value: &Value) -> Result<RestrictedExpression, RequestError> {
    if COMPUTED.contains(&key) {
        return Err(RequestError::Computed(key.to_owned()));
    }
    let wrong = |what: &str| RequestError::Context(format!("attribute {key:?} must be {what}"));
    match (key, value) {
        ("zone" | "posture", Value::String(s)) => Ok(RestrictedExpression::new_string(s.clone())),
        ("zone" | "posture", _) => Err(wrong("a string")),
        ("labels", Value::Array(items)) => {
            let labels = items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(RestrictedExpression::new_string(s.clone())),
                    _ => Err(wrong("a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RestrictedExpression::new_set(labels))
        }
        ("labels", _) => Err(wrong("a list of strings")),
        _ => Err(RequestError::Context(format!(
            "attribute {key:?} is not in the schema (zone, posture, labels)"
        ))),
    }
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
            None,
        )
        .map_err(|e| RequestError::Entity(e.to_string()))?;

        let mut context: Vec<(String, RestrictedExpression)> = Vec::with_capacity(8);
        for (k, v) in &self.attributes {
            context.push((k.clone(), supplied(k, v)?));
        }
        context.push((
            "time".into(),
            RestrictedExpression::new_datetime(cedar_time(self.time)),
        ));
        if let Some(ip) = self.source_address {
            context.push((
                "source_address".into(),
                RestrictedExpression::new_ip(ip.to_string()),
            ));
        }
        context.push((
            "federated".into(),
            RestrictedExpression::new_bool(self.federated),
        ));
        let remaining = self.svid_remaining.map_or(0, |d| d.as_secs());
        context.push((
            "svid_remaining_secs".into(),
            RestrictedExpression::new_long(i64::try_from(remaining).unwrap_or(i64::MAX)),
        ));
        let context =
            Context::from_pairs(context).map_err(|e| RequestError::Context(e.to_string()))?;
        // Every part was typed above as the schema declares it: validating
        // against the schema again on each request cost most of a decision.
        let request = Request::new(principal, action, resource, context, None)
            .map_err(|e| RequestError::Context(e.to_string()))?;
        Ok((request, entities))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_built_as_the_schema_declares_them() {
        let mut principal = Principal::new(SpiffeId::parse("spiffe://example.org/a/b").unwrap());
        principal.selectors = vec!["unix:uid:1".into()];
        principal.hints = vec!["web".into()];
        let attributes = serde_json::json!({"zone": "dmz", "posture": "ok", "labels": ["a=b"]});
        let request = AuthzRequest {
            principal,
            action: "read".into(),
            resource: "/r".into(),
            time: SystemTime::UNIX_EPOCH,
            source_address: Some("10.0.0.1".parse().unwrap()),
            federated: false,
            svid_remaining: Some(Duration::from_secs(5)),
            attributes: attributes.as_object().cloned().unwrap(),
        };
        let (cedar, entities) = request.to_cedar().unwrap();
        let schema = crate::schema::schema();
        Request::new(
            cedar.principal().cloned().unwrap(),
            cedar.action().cloned().unwrap(),
            cedar.resource().cloned().unwrap(),
            cedar.context().cloned().unwrap(),
            Some(schema),
        )
        .unwrap();
        Entities::from_entities(entities.iter().cloned(), Some(schema)).unwrap();
        let bad = |attrs: serde_json::Value| {
            let mut r = request.clone();
            r.attributes = attrs.as_object().cloned().unwrap();
            r.to_cedar().map(|_| ()).unwrap_err().to_string()
        };
        assert!(bad(serde_json::json!({"labels": [1]})).contains("list of strings"));
        assert!(bad(serde_json::json!({"shoe_size": 44})).contains("shoe_size"));
    }

    #[test]
    fn times_are_in_a_form_cedar_takes() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_575_200_042);
        assert_eq!(cedar_time(t), "2026-12-06T16:40:00.042Z");
    }
}
