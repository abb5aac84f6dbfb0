//! `signet-server jwt mint`: a JWT-SVID for any SPIFFE ID of the trust
//! domain, outside any agent. Prints the token alone (or JSON).

use std::time::Duration;

use clap::{Args, Subcommand};
use signet_proto::admin::MintJwtSvidRequest;

use super::client::{connect, status_error};
use super::{duration_arg, print_json, ttl_secs, AdminArgs, Output, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum JwtCommand {
    /// Mints a JWT-SVID; prints the token alone.
    Mint(MintArgs),
}

#[derive(Debug, Args)]
pub struct MintArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// SPIFFE ID of the token's subject, in the server's trust domain.
    #[arg(long)]
    spiffe_id: String,
    /// Audience; repeat for several.
    #[arg(long, required = true)]
    audience: Vec<String>,
    /// Token lifetime (default: the server's JWT-SVID TTL, 5m).
    #[arg(long, value_parser = duration_arg)]
    ttl: Option<Duration>,
}

impl JwtCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let JwtCommand::Mint(a) = self;
        let ttl = ttl_secs("--ttl", a.ttl)?;
        let mut client = connect(&a.admin.admin_socket).await?;
        let resp = client
            .mint_jwt_svid(MintJwtSvidRequest {
                spiffe_id: a.spiffe_id,
                audience: a.audience,
                ttl,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        match a.output.output {
            Output::Text => println!("{}", resp.token),
            Output::Json => print_json(&serde_json::json!({
                "token": resp.token,
                "issued_at": resp.issued_at,
                "expires_at": resp.expires_at,
            }))?,
        }
        Ok(())
    }
}
