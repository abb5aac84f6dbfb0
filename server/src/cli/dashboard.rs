//! `signet-server dashboard login`: a one-time link to the read-only
//! dashboard (valid 10 minutes, once), for a browser on a trusted host.

use clap::{Args, Subcommand};
use serde_json::json;
use signet_proto::admin::CreateDashboardLoginRequest;

use super::client::{connect, status_error};
use super::{print_json, rfc3339, AdminArgs, Output, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum DashboardCommand {
    /// Prints a one-time login link to the dashboard (valid 10 minutes).
    Login(LoginArgs),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl DashboardCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            DashboardCommand::Login(a) => {
                let mut client = connect(&a.admin.admin_socket).await?;
                let login = client
                    .create_dashboard_login(CreateDashboardLoginRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match a.output.output {
                    Output::Json => print_json(&json!({
                        "url": login.url,
                        "expires_at": login.expires_at,
                    }))?,
                    Output::Text => {
                        println!("{}", login.url);
                        eprintln!(
                            "open it once before {}; it logs one browser in",
                            rfc3339(login.expires_at)
                        );
                    }
                }
                Ok(())
            }
        }
    }
}
