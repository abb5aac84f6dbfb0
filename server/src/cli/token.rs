//! `signet-server token generate`.

use std::time::Duration;

use clap::{Args, Subcommand};
use signet_proto::admin::CreateJoinTokenRequest;

use super::client::{connect, status_error};
use super::{duration_arg, print_json, AdminArgs, Output, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Creates a single-use join token; prints the token alone.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Token lifetime (default: the server's, 10m).
    #[arg(long, value_parser = duration_arg)]
    ttl: Option<Duration>,
}

impl TokenCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let TokenCommand::Generate(args) = self;
        let ttl = match args.ttl {
            None => 0,
            Some(d) if d.is_zero() => anyhow::bail!("--ttl must be longer than zero"),
            Some(d) => {
                u32::try_from(d.as_secs()).map_err(|_| anyhow::anyhow!("--ttl is too long"))?
            }
        };
        let mut client = connect(&args.admin.admin_socket).await?;
        let resp = client
            .create_join_token(CreateJoinTokenRequest { ttl })
            .await
            .map_err(status_error)?
            .into_inner();
        match args.output.output {
            Output::Text => println!("{}", resp.token),
            Output::Json => print_json(&serde_json::json!({
                "token": resp.token,
                "expires_at": resp.expires_at,
            }))?,
        }
        Ok(())
    }
}
