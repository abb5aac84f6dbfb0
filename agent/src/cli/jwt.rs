//! `signet-agent api fetch jwt`, `api fetch jwt-bundle` and `api validate
//! jwt`: JWT-SVIDs, JWT bundles and validation through the Workload API,
//! printed like SPIRE's CLI (or as JSON).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prost_types::value::Kind;
use serde_json::Value;
use signet_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse,
};

use super::client;
use super::fetch::{first_message, status_error, Output};

#[derive(Debug, Clone, clap::Args)]
pub struct FetchJwtArgs {
    /// Audience the token is for; repeat for several.
    #[arg(long, required = true)]
    pub audience: Vec<String>,
    /// Only the JWT-SVID for this SPIFFE ID (else one per identity).
    #[arg(long)]
    pub spiffe_id: Option<String>,
    /// Workload API socket (else $SPIFFE_ENDPOINT_SOCKET, else the default).
    #[arg(long)]
    pub socket_path: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Seconds to keep retrying while the agent is unavailable.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FetchJwtBundleArgs {
    /// Workload API socket (else $SPIFFE_ENDPOINT_SOCKET, else the default).
    #[arg(long)]
    pub socket_path: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Seconds to keep retrying while the agent is unavailable.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ValidateJwtArgs {
    /// The audience the token must carry.
    #[arg(long)]
    pub audience: String,
    /// The JWT-SVID (JWS compact serialization).
    #[arg(long)]
    pub svid: String,
    /// Workload API socket (else $SPIFFE_ENDPOINT_SOCKET, else the default).
    #[arg(long)]
    pub socket_path: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

pub async fn fetch(args: FetchJwtArgs) -> anyhow::Result<()> {
    let socket = client::resolve_socket(args.socket_path.as_deref())?;
    let request = JwtsvidRequest {
        audience: args.audience.clone(),
        spiffe_id: args.spiffe_id.clone().unwrap_or_default(),
    };
    let response = with_retry(Duration::from_secs(args.timeout), || {
        fetch_once(&socket, request.clone())
    })
    .await?;
    match args.output {
        Output::Text => print!("{}", render_svids_text(&response)),
        Output::Json => println!("{}", render_svids_json(&response)),
    }
    Ok(())
}

async fn fetch_once(socket: &Path, request: JwtsvidRequest) -> anyhow::Result<JwtsvidResponse> {
    let mut api = client::connect(socket).await?;
    Ok(api
        .fetch_jwtsvid(client::request(request))
        .await
        .map_err(status_error)?
        .into_inner())
}

pub async fn fetch_bundle(args: FetchJwtBundleArgs) -> anyhow::Result<()> {
    let socket = client::resolve_socket(args.socket_path.as_deref())?;
    let response = with_retry(Duration::from_secs(args.timeout), || {
        fetch_bundle_once(&socket)
    })
    .await?;
    match args.output {
        Output::Text => print!("{}", render_bundles_text(&response)),
        Output::Json => println!("{}", render_bundles_json(&response)),
    }
    Ok(())
}

async fn fetch_bundle_once(socket: &Path) -> anyhow::Result<JwtBundlesResponse> {
    let mut api = client::connect(socket).await?;
    let call = api
        .fetch_jwt_bundles(client::request(JwtBundlesRequest {}))
        .await;
    first_message(call, "a bundle").await
}

pub async fn validate(args: ValidateJwtArgs) -> anyhow::Result<()> {
    let socket = client::resolve_socket(args.socket_path.as_deref())?;
    let mut api = client::connect(&socket).await?;
    let response = api
        .validate_jwtsvid(client::request(ValidateJwtsvidRequest {
            audience: args.audience,
            svid: args.svid,
        }))
        .await
        // The reason alone: `Error: <why the token is refused>`.
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    match args.output {
        Output::Text => print!("{}", render_validation_text(&response)),
        Output::Json => println!("{}", render_validation_json(&response)),
    }
    Ok(())
}

/// Retries connection failures and `Unavailable` until `timeout`.
async fn with_retry<T, F, Fut>(timeout: Duration, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let err = match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) => e,
            Err(_) => anyhow::bail!("timed out after {}s", timeout.as_secs()),
        };
        let retryable = match err.downcast_ref::<super::fetch::StatusDisplay>() {
            Some(s) => s.code() == tonic::Code::Unavailable,
            None => true,
        };
        if !retryable || tokio::time::Instant::now() >= deadline {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `token(<spiffe id>):` then the token alone on the next line.
pub fn render_svids_text(response: &JwtsvidResponse) -> String {
    response
        .svids
        .iter()
        .map(|s| format!("token({}):\n{}\n", s.spiffe_id, s.svid))
        .collect()
}

pub fn render_svids_json(response: &JwtsvidResponse) -> Value {
    let svids: Vec<Value> = response
        .svids
        .iter()
        .map(|s| serde_json::json!({"spiffe_id": s.spiffe_id, "svid": s.svid, "hint": s.hint}))
        .collect();
    serde_json::json!({ "svids": svids })
}

/// Sorted by trust domain: `bundle(<td id>):` then the JWKS on one line.
fn render_bundles_text(response: &JwtBundlesResponse) -> String {
    let mut tds: Vec<(&String, &Vec<u8>)> = response.bundles.iter().collect();
    tds.sort();
    tds.into_iter()
        .map(|(td, doc)| format!("bundle({td}):\n{}\n", String::from_utf8_lossy(doc)))
        .collect()
}

fn render_bundles_json(response: &JwtBundlesResponse) -> Value {
    let bundles: serde_json::Map<String, Value> = response
        .bundles
        .iter()
        .map(|(td, doc)| {
            let doc = serde_json::from_slice(doc)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(doc).into_owned()));
            (td.clone(), doc)
        })
        .collect();
    serde_json::json!({ "bundles": bundles })
}

pub fn render_validation_text(response: &ValidateJwtsvidResponse) -> String {
    format!(
        "SVID is valid.\nSPIFFE ID : {}\nClaims : {}\n",
        response.spiffe_id,
        claims_json(response)
    )
}

fn render_validation_json(response: &ValidateJwtsvidResponse) -> Value {
    serde_json::json!({"spiffe_id": response.spiffe_id, "claims": claims_json(response)})
}

fn claims_json(response: &ValidateJwtsvidResponse) -> Value {
    response
        .claims
        .as_ref()
        .map(struct_to_json)
        .unwrap_or_else(|| Value::Object(Default::default()))
}

/// Struct → JSON; whole numbers print as integers (`exp`, `iat`).
fn struct_to_json(s: &prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(v: &prost_types::Value) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_proto::workload::Jwtsvid;

    #[test]
    fn fetch_jwt_prints_each_token_on_its_own_line() {
        let response = JwtsvidResponse {
            svids: vec![
                Jwtsvid {
                    spiffe_id: "spiffe://example.org/a".into(),
                    svid: "t.a.x".into(),
                    hint: String::new(),
                },
                Jwtsvid {
                    spiffe_id: "spiffe://example.org/b".into(),
                    svid: "t.b.x".into(),
                    hint: "internal".into(),
                },
            ],
        };
        assert_eq!(
            render_svids_text(&response),
            "token(spiffe://example.org/a):\nt.a.x\ntoken(spiffe://example.org/b):\nt.b.x\n"
        );
        assert_eq!(
            render_svids_json(&response)["svids"][1],
            serde_json::json!({"spiffe_id": "spiffe://example.org/b", "svid": "t.b.x", "hint": "internal"})
        );
    }

    #[test]
    fn validation_prints_spiffe_id_and_claims_with_integer_times() {
        let Value::Object(claims) =
            serde_json::json!({"aud": ["a"], "exp": 1700000000, "sub": "spiffe://example.org/a"})
        else {
            unreachable!()
        };
        let response = ValidateJwtsvidResponse {
            spiffe_id: "spiffe://example.org/a".into(),
            claims: Some(crate::workload_api::jwt::to_struct(claims)),
        };
        assert_eq!(
            render_validation_text(&response),
            "SVID is valid.\nSPIFFE ID : spiffe://example.org/a\nClaims : {\"aud\":[\"a\"],\"exp\":1700000000,\"sub\":\"spiffe://example.org/a\"}\n"
        );
    }
}
