//! `signet-server server list | remove --id ID`: the servers sharing this
//! server's datastore (an HA group on PostgreSQL; one on SQLite).

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use signet_proto::admin::{ListServersRequest, RemoveServerRequest, Server};

use super::client::{connect, status_error};
use super::{print_json, print_list, rfc3339, AdminArgs, Output, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Lists the servers sharing the datastore, with when each last said it
    /// is alive (every 30 s) and how many of the bundle's authorities are its.
    List(ListArgs),
    /// Forgets a server that is gone for good (stop it first). Its
    /// authorities stay in the bundle until what they signed has expired.
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// The server's id, as `server list` shows it.
    #[arg(long)]
    id: String,
}

fn server_json(s: &Server, self_id: &str) -> Value {
    json!({
        "id": s.id,
        "hostname": s.hostname,
        "address": s.address,
        "started_at": s.started_at,
        "last_seen": s.last_seen,
        "x509_authorities": s.x509_authorities,
        "jwt_authorities": s.jwt_authorities,
        "this_server": s.id == self_id,
    })
}

fn server_text(s: &Server, self_id: &str) -> String {
    let id = if s.id == self_id {
        format!("{} (this server)", s.id)
    } else {
        s.id.clone()
    };
    [
        ("ID", id),
        ("Hostname", s.hostname.clone()),
        ("Node API", s.address.clone()),
        ("Started", rfc3339(s.started_at)),
        ("Last seen", rfc3339(s.last_seen)),
        (
            "Authorities",
            format!("{} X.509, {} JWT", s.x509_authorities, s.jwt_authorities),
        ),
    ]
    .into_iter()
    .map(|(k, v)| format!("{k:<12}: {v}\n"))
    .collect()
}

impl ServerCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            ServerCommand::List(a) => {
                let mut client = connect(&a.admin.admin_socket).await?;
                let listed = client
                    .list_servers(ListServersRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let me = listed.self_id.as_str();
                print_list(
                    a.output.output,
                    "servers",
                    ("server", "servers"),
                    &listed.servers,
                    |s| server_json(s, me),
                    |s| server_text(s, me),
                )
            }
            ServerCommand::Remove(a) => {
                let mut client = connect(&a.admin.admin_socket).await?;
                let removed = client
                    .remove_server(RemoveServerRequest { id: a.id })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match a.output.output {
                    Output::Json => print_json(&server_json(&removed, ""))?,
                    Output::Text => println!("Removed server {}", removed.id),
                }
                Ok(())
            }
        }
    }
}
