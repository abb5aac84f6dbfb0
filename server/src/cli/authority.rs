//! `signet-server authority x509|jwt show|prepare|activate|taint|revoke`.

use clap::{Args, Subcommand, ValueEnum};
use signet_proto::admin::{Authority, AuthorityKind, AuthorityKindRequest, AuthorityRequest};

use super::client::{connect, status_error};
use super::{print_json, rfc3339, AdminArgs, Output, OutputArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    X509,
    Jwt,
}

impl Kind {
    fn wire(self) -> i32 {
        match self {
            Kind::X509 => AuthorityKind::X509 as i32,
            Kind::Jwt => AuthorityKind::Jwt as i32,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::X509 => "x509",
            Kind::Jwt => "jwt",
        }
    }
}

#[derive(Debug, Args)]
pub struct AuthorityCommand {
    /// x509 (the CA) or jwt (the JWT-SVID signing key).
    #[arg(value_enum)]
    kind: Kind,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Lists every server's authorities:
    /// `<id>  <state>  tainted=<bool>  not_after=<RFC3339>  server=<server id>`.
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Prepares a new authority (in the bundle, not signing yet); prints its id.
    Prepare {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Activates the prepared authority; prints its id.
    Activate {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Marks a non-active authority tainted: everything it signed is re-issued.
    Taint {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        id: String,
    },
    /// Removes a tainted, non-active authority from the bundle.
    Revoke {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        id: String,
    },
}

impl AuthorityCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let kind = self.kind;
        let req = AuthorityKindRequest { kind: kind.wire() };
        match self.action {
            Action::Show { admin, output } => {
                let list = connect(&admin.admin_socket)
                    .await?
                    .list_authorities(req)
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .authorities;
                match output.output {
                    Output::Json => print_json(&serde_json::json!({
                        "authorities": list.iter().map(|a| serde_json::json!({
                            "kind": kind.name(),
                            "id": a.id,
                            "state": a.state,
                            "tainted": a.tainted,
                            "not_before": a.not_before,
                            "not_after": a.not_after,
                            "server_id": a.server_id,
                        })).collect::<Vec<_>>(),
                    }))?,
                    Output::Text => {
                        for a in &list {
                            println!("{}", line(a));
                        }
                    }
                }
            }
            Action::Prepare { admin } => {
                let a = connect(&admin.admin_socket)
                    .await?
                    .prepare_authority(req)
                    .await
                    .map_err(status_error)?
                    .into_inner();
                println!("{}", a.id);
            }
            Action::Activate { admin } => {
                let a = connect(&admin.admin_socket)
                    .await?
                    .activate_authority(req)
                    .await
                    .map_err(status_error)?
                    .into_inner();
                println!("{}", a.id);
            }
            Action::Taint { admin, id } => {
                let a = connect(&admin.admin_socket)
                    .await?
                    .taint_authority(AuthorityRequest {
                        kind: kind.wire(),
                        id,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                println!("Tainted {} authority {}", kind.name(), a.id);
            }
            Action::Revoke { admin, id } => {
                let a = connect(&admin.admin_socket)
                    .await?
                    .revoke_authority(AuthorityRequest {
                        kind: kind.wire(),
                        id,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                println!("Revoked {} authority {}", kind.name(), a.id);
            }
        }
        Ok(())
    }
}

/// `<id>  <state>  tainted=<true|false>  not_after=<RFC3339>`
pub fn line(a: &Authority) -> String {
    format!(
        "{}  {}  tainted={}  not_after={}  server={}",
        a.id,
        a.state,
        a.tainted,
        rfc3339(a.not_after),
        a.server_id
    )
}
