//! `signet-server introspect --token JWT [--audience A] [--output json]`:
//! exit 0 when the token is active, 3 when not, 1 on error.

use std::process::ExitCode;

use clap::Args;
use signet_proto::admin::IntrospectJwtSvidRequest;

use super::client::{connect, status_error};
use super::{print_json, AdminArgs, Output, OutputArgs};

/// Exit code for an inactive token.
pub const INACTIVE: u8 = 3;

#[derive(Debug, Args)]
pub struct IntrospectArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// The JWT-SVID.
    #[arg(long)]
    token: String,
    /// Also check that the token is for this audience.
    #[arg(long, default_value = "")]
    audience: String,
}

impl IntrospectArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let r = connect(&self.admin.admin_socket)
            .await?
            .introspect_jwt_svid(IntrospectJwtSvidRequest {
                token: self.token,
                audience: self.audience,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        let claims: serde_json::Value =
            serde_json::from_str(&r.claims_json).unwrap_or(serde_json::Value::Null);
        match self.output.output {
            Output::Json => print_json(&serde_json::json!({
                "active": r.active,
                "reason": r.reason,
                "spiffe_id": r.spiffe_id,
                "claims": claims,
            }))?,
            Output::Text => {
                if r.active {
                    println!("active");
                } else {
                    println!("inactive: {}", r.reason);
                }
                println!("SPIFFE ID : {}", r.spiffe_id);
                println!("Claims    : {claims}");
            }
        }
        Ok(if r.active {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(INACTIVE)
        })
    }
}
