//! FetchJWTSVID and ValidateJWTSVID: request checks, one JWT-SVID per
//! identity of the caller (minted by the server, cached), and local
//! validation against the JWT keys of the own trust domain or of a federated
//! one the caller's entries federate with.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use prost_types::value::Kind;
use serde_json::{Map, Value};
use signet_core::jwt::{validate_jwt_svid, JwtBundles, ValidationOptions};
use signet_core::{Selector, SpiffeId, TrustDomain};
use signet_proto::workload::{
    Jwtsvid, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest, ValidateJwtsvidResponse,
};
use tonic::Status;

use super::federation;
use super::x509::no_identity;
use crate::cache::{CachedEntry, JwtSvidCache, Snapshot};

use super::status::{self, AUDIENCE_REQUIRED, REVOKED, SVID_REQUIRED};

/// The requested SPIFFE ID, if any, once the request is known to be sound.
pub fn check_fetch_request(request: &JwtsvidRequest) -> Result<Option<SpiffeId>, Status> {
    signet_core::jwt::check_audience(&request.audience)
        .map_err(|e| status::invalid_argument(e.to_string()))?;
    if request.spiffe_id.is_empty() {
        return Ok(None);
    }
    SpiffeId::parse(&request.spiffe_id)
        .map(Some)
        .map_err(|e| status::invalid_argument(format!("invalid requested SPIFFE ID: {e}")))
}

/// The caller's identities in the order FetchX509SVID serves them: by SPIFFE
/// ID then entry id, a non-empty hint only once.
pub fn identities<'a>(
    snapshot: &'a Snapshot,
    selectors: &'a HashSet<Selector>,
) -> Vec<&'a CachedEntry> {
    let mut matched: Vec<&CachedEntry> = snapshot.matching(selectors).collect();
    matched.sort_by(|a, b| {
        (a.entry.spiffe_id.to_string(), &a.entry.id)
            .cmp(&(b.entry.spiffe_id.to_string(), &b.entry.id))
    });
    let mut hints = HashSet::new();
    matched
        .into_iter()
        .filter(|c| c.entry.hint.is_empty() || hints.insert(c.entry.hint.as_str()))
        .collect()
}

/// One JWT-SVID per selected identity, minted concurrently.
pub async fn fetch_jwt_svids(
    cache: &JwtSvidCache,
    snapshot: &Snapshot,
    selectors: &HashSet<Selector>,
    requested: Option<&SpiffeId>,
    audience: &[String],
) -> Result<JwtsvidResponse, Status> {
    let mine = identities(snapshot, selectors);
    if mine.is_empty() {
        return Err(no_identity());
    }
    let selected: Vec<&CachedEntry> = match requested {
        None => mine,
        Some(id) => mine
            .into_iter()
            .filter(|c| &c.entry.spiffe_id == id)
            .collect(),
    };
    if selected.is_empty() {
        let id = requested.map(ToString::to_string).unwrap_or_default();
        return Err(status::no_identity_for(id));
    }
    let mints = selected.iter().map(|c| async move {
        let e = &c.entry;
        let token = cache
            .fetch(&e.id, &e.spiffe_id, audience)
            .await
            .map_err(|err| {
                tracing::warn!(entry_id = e.id, spiffe_id = %e.spiffe_id, error = %err, "JWT-SVID mint failed");
                status::jwt_unavailable(&e.spiffe_id, err)
            })?;
        Ok::<_, Status>(Jwtsvid {
            spiffe_id: e.spiffe_id.to_string(),
            svid: token,
            hint: e.hint.clone(),
        })
    });
    let svids = futures::future::try_join_all(mints).await?;
    Ok(JwtsvidResponse { svids })
}

/// An audience and a token, each within its bound.
pub fn check_validate_request(request: &ValidateJwtsvidRequest) -> Result<(), Status> {
    use signet_core::jwt::{MAX_AUDIENCE_BYTES, MAX_TOKEN_BYTES};
    if request.audience.is_empty() {
        return Err(status::invalid_argument(AUDIENCE_REQUIRED));
    }
    if request.svid.is_empty() {
        return Err(status::invalid_argument(SVID_REQUIRED));
    }
    if request.audience.len() > MAX_AUDIENCE_BYTES {
        return Err(status::invalid_argument(format!(
            "audience of {} bytes; at most {MAX_AUDIENCE_BYTES} are allowed",
            request.audience.len()
        )));
    }
    if request.svid.len() > MAX_TOKEN_BYTES {
        return Err(status::invalid_argument(format!(
            "svid of {} bytes; at most {MAX_TOKEN_BYTES} are allowed",
            request.svid.len()
        )));
    }
    Ok(())
}

/// Refuses a caller none of whose entries federates with `trust_domain`.
pub fn check_federates_with(
    snapshot: &Snapshot,
    selectors: &HashSet<Selector>,
    trust_domain: &TrustDomain,
) -> Result<(), Status> {
    let federated =
        federation::trust_domains(snapshot.matching(selectors).map(|c| c.entry.as_ref()));
    if federated.contains(trust_domain) {
        Ok(())
    } else {
        Err(status::not_federated(trust_domain.as_str()))
    }
}

/// Validates locally against the own trust domain's keys, which any caller
/// may use (as SPIRE allows: the answer holds no secret and only uses public
/// keys), or, when `federated` names a trust domain the caller was found to
/// federate with, against that trust domain's keys alone.
pub fn validate(
    snapshot: &Snapshot,
    request: &ValidateJwtsvidRequest,
    federated: Option<&TrustDomain>,
    now: SystemTime,
    leeway: Duration,
) -> Result<ValidateJwtsvidResponse, Status> {
    check_validate_request(request)?;
    let peer_keys: JwtBundles;
    let keys = match federated.and_then(|td| snapshot.federated_bundles.get(td)) {
        Some(bundle) => {
            peer_keys = [(
                bundle.trust_domain.clone(),
                bundle.jwt_keys().into_iter().collect(),
            )]
            .into();
            &peer_keys
        }
        None => &*snapshot.jwt_bundles,
    };
    let validated = validate_jwt_svid(
        &request.svid,
        &request.audience,
        keys,
        ValidationOptions { now, leeway },
    )
    .map_err(|e| status::invalid_argument(e.to_string()))?;
    // Revoked jtis are the own server's; a peer's token may reuse one.
    let own = validated.spiffe_id.is_member_of(&snapshot.trust_domain);
    let jti = validated.claims.get("jti").and_then(Value::as_str);
    if own && jti.is_some_and(|jti| snapshot.revocations.is_jti_revoked(jti, now)) {
        return Err(status::invalid_argument(REVOKED));
    }
    Ok(ValidateJwtsvidResponse {
        spiffe_id: validated.spiffe_id.to_string(),
        claims: Some(to_struct(validated.claims)),
    })
}

/// JSON object → protobuf Struct (numbers become doubles, as Struct has
/// no integers).
pub fn to_struct(map: Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn to_value(v: Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(prost_types::NullValue::NullValue.into()),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(list) => Kind::ListValue(prost_types::ListValue {
            values: list.into_iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_convert_to_a_struct_of_matching_kinds() {
        let claims = serde_json::json!({
            "sub": "spiffe://example.org/w",
            "aud": ["a", "b"],
            "exp": 1700000000,
            "ok": true,
            "none": null,
            "nested": {"x": 1.5},
        });
        let Value::Object(map) = claims else {
            unreachable!()
        };
        let s = to_struct(map);
        let kind = |k: &str| s.fields[k].kind.clone().unwrap();
        assert_eq!(
            kind("sub"),
            Kind::StringValue("spiffe://example.org/w".into())
        );
        assert_eq!(kind("exp"), Kind::NumberValue(1_700_000_000.0));
        assert_eq!(kind("ok"), Kind::BoolValue(true));
        assert_eq!(kind("none"), Kind::NullValue(0));
        let Kind::ListValue(aud) = kind("aud") else {
            panic!("aud is a list")
        };
        assert_eq!(aud.values.len(), 2);
        let Kind::StructValue(nested) = kind("nested") else {
            panic!("nested is a struct")
        };
        assert_eq!(nested.fields["x"].kind, Some(Kind::NumberValue(1.5)));
    }

    #[test]
    fn fetch_request_rules() {
        let req = |aud: &[&str], id: &str| JwtsvidRequest {
            audience: aud.iter().map(|s| s.to_string()).collect(),
            spiffe_id: id.into(),
        };
        let code = |r: Result<Option<SpiffeId>, Status>| r.unwrap_err().code();
        assert_eq!(
            code(check_fetch_request(&req(&[], ""))),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(check_fetch_request(&req(&["a", ""], ""))),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(check_fetch_request(&req(&["a"], "http://x/y"))),
            tonic::Code::InvalidArgument
        );
        assert_eq!(check_fetch_request(&req(&["a"], "")).unwrap(), None);
        assert!(check_fetch_request(&req(&["a"], "spiffe://example.org/w"))
            .unwrap()
            .is_some());
    }
}
