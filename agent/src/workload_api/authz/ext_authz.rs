//! Envoy's `ext_authz` v3 (`envoy.service.auth.v3.Authorization/Check`)
//! on the Workload API socket: Envoy asks before it forwards a request, the
//! agent answers from its policies. The mapping (README, "Authorization"):
//! - principal: the peer certificate Envoy forwards
//!   (`include_peer_certificate`; checked against the bundles this agent
//!   holds), else the SPIFFE ID Envoy names as `source.principal`, else a
//!   JWT-SVID in `[authz] jwt_header` for `[authz] jwt_audience`;
//! - action: `context_extensions["signet_action"]`, else the method: GET,
//!   HEAD, OPTIONS → read; DELETE → delete; any other → write;
//! - resource: `context_extensions["signet_resource"]`, else the path
//!   without its query;
//! - context: the request's time and source address, `zone` and `posture`
//!   from `context_extensions`, `labels` from the peer's labels (`k=v`).
//!
//! Only Envoy's configuration (context extensions, labels) supplies
//! context: headers come from the client and are never taken as context.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HttpResponse,
    HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::google::rpc;
use serde_json::{Map, Value};
use signet_core::SpiffeId;
use signet_proto::workload::ValidateJwtsvidRequest;
use tonic::{Code, Request, Response, Status};

use super::question::{decide, Question};
use crate::cache::Snapshot;
use crate::workload_api::{federation, jwt, WorkloadApi};

pub use envoy_types::ext_authz::v3::pb::AuthorizationServer as ExtAuthzServer;

#[derive(Clone)]
pub struct ExtAuthz {
    api: WorkloadApi,
}

impl ExtAuthz {
    pub fn new(api: WorkloadApi) -> Self {
        Self { api }
    }
}

/// Why a request is not let through, as Envoy's client sees it.
fn refusal(code: Code, http: HttpStatusCode, message: String) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code: code.into(),
            message: message.clone(),
            details: vec![],
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http.into() }),
            headers: vec![],
            body: message,
        })),
        dynamic_metadata: None,
    }
}

fn allowed() -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code: Code::Ok.into(),
            message: String::new(),
            details: vec![],
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
        dynamic_metadata: None,
    }
}

/// `%XX` sequences decoded (Envoy URL-encodes the forwarded PEM).
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// The forwarded peer certificate's SPIFFE ID and lifetime left, once it
/// chains to a bundle this agent holds for its trust domain.
fn certificate_principal(
    snapshot: &Snapshot,
    encoded: &str,
    now: SystemTime,
) -> Result<(SpiffeId, Option<Duration>), String> {
    let pem_bytes =
        percent_decode(encoded).ok_or("the forwarded certificate is not URL-encoded")?;
    let parsed = pem::parse(pem_bytes).map_err(|e| format!("the forwarded certificate: {e}"))?;
    let der = parsed.into_contents();
    let info = signet_core::x509::cert_info(&der).map_err(|e| e.to_string())?;
    let id = info
        .spiffe_id
        .ok_or("the forwarded certificate holds no SPIFFE ID")?;
    let td = id.trust_domain();
    let bundle = if td == &snapshot.trust_domain {
        snapshot.bundle.as_deref().cloned().unwrap_or_default()
    } else {
        snapshot
            .federated_bundles
            .get(td)
            .map(|b| b.x509_authorities.clone())
            .unwrap_or_default()
    };
    signet_core::x509::validate_x509_svid(&[der], &bundle, now)
        .map_err(|e| format!("the forwarded certificate of {id}: {e}"))?;
    Ok((id, info.not_after.duration_since(now).ok()))
}

/// The JWT-SVID in the configured header, validated for the configured
/// audience against the bundle of the trust domain it claims.
fn jwt_principal(
    api: &WorkloadApi,
    snapshot: &Snapshot,
    http: &HttpRequest,
    now: SystemTime,
) -> Option<Result<(SpiffeId, Option<Duration>), String>> {
    let value = http.headers.get(&api.authz.jwt_header)?;
    let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
    let Some(audience) = &api.authz.jwt_audience else {
        return Some(Err(
            "a JWT-SVID is taken only with [authz] jwt_audience set".into(),
        ));
    };
    let request = ValidateJwtsvidRequest {
        audience: audience.clone(),
        svid: token.to_owned(),
    };
    let peer = federation::claimed_trust_domain(snapshot, token);
    Some(
        jwt::validate(snapshot, &request, peer.as_ref(), now, api.jwt_leeway)
            .map_err(|s| format!("JWT-SVID: {}", s.message()))
            .and_then(|r| {
                let id = SpiffeId::parse_with_path(&r.spiffe_id).map_err(|e| e.to_string())?;
                let exp = r
                    .claims
                    .and_then(|c| c.fields.get("exp").cloned())
                    .and_then(|v| match v.kind {
                        Some(prost_types::value::Kind::NumberValue(n)) => Some(n),
                        _ => None,
                    });
                let left = exp.and_then(|e| {
                    let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(e.max(0.0));
                    at.duration_since(now).ok()
                });
                Ok((id, left))
            }),
    )
}

/// The caller Envoy authenticated: see the module comment for the order.
fn principal(
    api: &WorkloadApi,
    snapshot: &Snapshot,
    source: Option<&Peer>,
    http: Option<&HttpRequest>,
    now: SystemTime,
) -> Result<(SpiffeId, Option<Duration>), String> {
    if let Some(peer) = source.filter(|p| !p.certificate.is_empty()) {
        let (id, left) = certificate_principal(snapshot, &peer.certificate, now)?;
        if !peer.principal.is_empty() && peer.principal != id.to_string() {
            return Err(format!(
                "source.principal {:?} is not the forwarded certificate's {id}",
                peer.principal
            ));
        }
        return Ok((id, left));
    }
    if let Some(named) = source
        .map(|p| p.principal.as_str())
        .filter(|p| p.starts_with("spiffe://"))
    {
        let id = SpiffeId::parse_with_path(named)
            .map_err(|e| format!("source.principal {named:?}: {e}"))?;
        return Ok((id, None));
    }
    if let Some(found) = http.and_then(|h| jwt_principal(api, snapshot, h, now)) {
        return found;
    }
    Err(
        "no SPIFFE principal: no peer certificate, no SPIFFE ID as source.principal, no JWT-SVID"
            .into(),
    )
}

/// The action a request is by its method (or Envoy's override).
fn action(extensions: &std::collections::HashMap<String, String>, method: &str) -> String {
    if let Some(a) = extensions.get("signet_action") {
        return a.clone();
    }
    match method.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" | "OPTIONS" => "read",
        "DELETE" => "delete",
        _ => "write",
    }
    .to_owned()
}

fn source_address(peer: Option<&Peer>) -> Option<IpAddr> {
    match peer?.address.as_ref()?.address.as_ref()? {
        Address::SocketAddress(s) => s.address.parse().ok(),
        _ => None,
    }
}

fn timestamp(t: &envoy_types::pb::google::protobuf::Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

impl ExtAuthz {
    fn check_request(&self, req: &CheckRequest) -> CheckResponse {
        let Ok(snapshot) = self.api.ready_snapshot() else {
            return refusal(
                Code::Unavailable,
                HttpStatusCode::ServiceUnavailable,
                "the agent holds no policies yet (no sync with the server)".into(),
            );
        };
        // Borrowed: Envoy asks this for every request it proxies.
        let none = AttributeContext::default();
        let attrs = req.attributes.as_ref().unwrap_or(&none);
        let http = attrs.request.as_ref().and_then(|r| r.http.as_ref());
        let now = attrs
            .request
            .as_ref()
            .and_then(|r| r.time.as_ref())
            .and_then(timestamp)
            .unwrap_or_else(|| self.api.clock.now());
        let (id, svid_remaining) =
            match principal(&self.api, &snapshot, attrs.source.as_ref(), http, now) {
                Ok(p) => p,
                Err(why) => {
                    return refusal(Code::Unauthenticated, HttpStatusCode::Unauthorized, why)
                }
            };
        let ext = &attrs.context_extensions;
        let resource = ext.get("signet_resource").cloned().unwrap_or_else(|| {
            let path = http.map_or("", |h| h.path.as_str());
            path.split(['?', '#']).next().unwrap_or_default().to_owned()
        });
        let mut attributes = Map::new();
        for key in ["zone", "posture"] {
            if let Some(v) = ext.get(key) {
                attributes.insert(key.into(), Value::String(v.clone()));
            }
        }
        if let Some(peer) = attrs.source.as_ref().filter(|p| !p.labels.is_empty()) {
            let mut labels: Vec<Value> = peer
                .labels
                .iter()
                .map(|(k, v)| Value::String(format!("{k}={v}")))
                .collect();
            labels.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            attributes.insert("labels".into(), Value::Array(labels));
        }
        let question = Question {
            principal: id.clone(),
            action: action(ext, http.map_or("", |h| h.method.as_str())),
            resource,
            source_address: source_address(attrs.source.as_ref()),
            svid_remaining,
            attributes,
        };
        match decide(&snapshot, question, now) {
            Ok(d) if d.allow => allowed(),
            Ok(d) => {
                let why = if d.policies.is_empty() {
                    "no policy permits it".to_owned()
                } else {
                    format!("forbidden by {}", d.policies.join(", "))
                };
                refusal(
                    Code::PermissionDenied,
                    HttpStatusCode::Forbidden,
                    format!("{id}: {why}"),
                )
            }
            Err(s) => refusal(
                Code::PermissionDenied,
                HttpStatusCode::Forbidden,
                s.message().to_owned(),
            ),
        }
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(self.check_request(request.get_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_actions_unless_envoy_names_one() {
        let none = std::collections::HashMap::new();
        assert_eq!(action(&none, "GET"), "read");
        assert_eq!(action(&none, "head"), "read");
        assert_eq!(action(&none, "POST"), "write");
        assert_eq!(action(&none, "PATCH"), "write");
        assert_eq!(action(&none, "DELETE"), "delete");
        let named = [("signet_action".to_owned(), "delete".to_owned())].into();
        assert_eq!(action(&named, "GET"), "delete");
    }

    #[test]
    fn percent_decoding_takes_envoys_pem_and_refuses_broken_escapes() {
        assert_eq!(
            percent_decode("-----BEGIN%20CERT%0A").unwrap(),
            b"-----BEGIN CERT\n"
        );
        assert!(percent_decode("%2").is_none());
        assert!(percent_decode("%zz").is_none());
    }
}
