//! `signet-agent api authorize`: asks the agent's policies (locally, no
//! server round trip) whether a workload may do an action on a resource,
//! and prints allow or deny with the policies that decided. Exit 0 when
//! allowed, 2 when denied, 1 when the question could not be asked.

use std::path::PathBuf;

use serde_json::json;
use signet_proto::authz::authorization_client::AuthorizationClient;
use signet_proto::authz::{DecideRequest, DecideResponse};

use super::client;
use super::fetch::{status_error, Output};

#[derive(Debug, Clone, clap::Args)]
pub struct AuthorizeArgs {
    /// The workload asking, by SPIFFE ID.
    #[arg(long)]
    pub principal: String,
    /// read, write or delete.
    #[arg(long)]
    pub action: String,
    /// The resource, by the id the service gives it.
    #[arg(long)]
    pub resource: String,
    /// Context attributes as a JSON object, e.g. '{"zone":"dmz"}'.
    #[arg(long)]
    pub context: Option<String>,
    /// The caller's IP address.
    #[arg(long)]
    pub source_address: Option<String>,
    /// Decide as at this time (RFC 3339, e.g. 2026-12-06T03:00:00Z).
    #[arg(long)]
    pub at: Option<String>,
    /// Workload API socket (else $SPIFFE_ENDPOINT_SOCKET, else the default).
    #[arg(long)]
    pub socket_path: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

fn unix_ms(rfc3339: &str) -> anyhow::Result<i64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map_err(|e| anyhow::anyhow!("--at {rfc3339:?}: {e}"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| anyhow::anyhow!("--at {rfc3339:?}: out of range"))
}

fn render_text(d: &DecideResponse) -> String {
    let mut out = String::from(if d.allow { "allow\n" } else { "deny\n" });
    if d.policies.is_empty() {
        out.push_str("decided by: no policy (denied by default)\n");
    } else {
        out.push_str(&format!("decided by: {}\n", d.policies.join(", ")));
    }
    for e in &d.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    out
}

/// The answer was deny (printed): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("denied")]
pub struct Denied;

pub async fn run(args: AuthorizeArgs) -> anyhow::Result<()> {
    let socket = client::resolve_socket(args.socket_path.as_deref())?;
    let mut api = AuthorizationClient::new(client::channel(&socket).await?);
    let request = DecideRequest {
        principal: args.principal,
        action: args.action,
        resource: args.resource,
        context_json: args.context.unwrap_or_default(),
        source_address: args.source_address.unwrap_or_default(),
        svid_remaining_secs: 0,
        time_unix_ms: args.at.as_deref().map(unix_ms).transpose()?.unwrap_or(0),
    };
    let d = api
        .decide(client::request(request))
        .await
        .map_err(status_error)?
        .into_inner();
    match args.output {
        Output::Text => print!("{}", render_text(&d)),
        Output::Json => println!(
            "{}",
            json!({"allow": d.allow, "policies": d.policies, "errors": d.errors})
        ),
    }
    if d.allow {
        Ok(())
    } else {
        Err(Denied.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_the_deciding_policies_or_the_default() {
        let allowed = DecideResponse {
            allow: true,
            policies: vec!["orders/readers".into()],
            errors: vec![],
        };
        assert_eq!(render_text(&allowed), "allow\ndecided by: orders/readers\n");
        let denied = DecideResponse::default();
        assert_eq!(
            render_text(&denied),
            "deny\ndecided by: no policy (denied by default)\n"
        );
        assert_eq!(unix_ms("1970-01-01T00:00:01.5Z").unwrap(), 1500);
        assert!(unix_ms("yesterday").is_err());
    }
}
