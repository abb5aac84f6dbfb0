//! `signet-server agent list | show | evict | ban`.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use signet_proto::admin::{Agent, AgentRequest, ListAgentsRequest};

use super::client::{connect, status_error};
use super::{print_json, print_list, rfc3339, AdminArgs, Output, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Lists attested agents.
    List(ListArgs),
    /// Shows one agent.
    Show(IdArgs),
    /// Deletes the agent's record; it must attest again.
    Evict(IdArgs),
    /// Bans the agent: it is refused until its record is evicted.
    Ban(IdArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[arg(long)]
    spiffe_id: String,
}

pub fn agent_json(a: &Agent) -> Value {
    json!({
        "spiffe_id": a.spiffe_id,
        "attestation_type": a.attestation_type,
        "serial": a.serial,
        "expires_at": a.expires_at,
        "banned": a.banned,
        "selectors": a.selectors,
        "attested_at": a.attested_at,
    })
}

pub fn agent_text(a: &Agent) -> String {
    let mut lines = vec![
        ("SPIFFE ID", a.spiffe_id.clone()),
        ("Attestation type", a.attestation_type.clone()),
        ("Expiration time", rfc3339(a.expires_at)),
        ("Serial number", a.serial.clone()),
        ("Attested at", rfc3339(a.attested_at)),
        ("Banned", a.banned.to_string()),
    ];
    lines.extend(a.selectors.iter().map(|s| ("Selector", s.clone())));
    lines
        .into_iter()
        .map(|(k, v)| format!("{k:<17}: {v}\n"))
        .collect()
}

impl AgentCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            AgentCommand::List(a) => {
                let mut client = connect(&a.admin.admin_socket).await?;
                let agents = client
                    .list_agents(ListAgentsRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .agents;
                print_list(
                    a.output.output,
                    "agents",
                    ("attested agent", "attested agents"),
                    &agents,
                    agent_json,
                    agent_text,
                )
            }
            AgentCommand::Show(a) => {
                one(a, "", |mut c, r| async move { c.get_agent(r).await }).await
            }
            AgentCommand::Evict(a) => {
                one(a, "Evicted agent ", |mut c, r| async move {
                    c.evict_agent(r).await
                })
                .await
            }
            AgentCommand::Ban(a) => {
                one(a, "Banned agent ", |mut c, r| async move {
                    c.ban_agent(r).await
                })
                .await
            }
        }
    }
}

type Client = signet_proto::admin::admin_client::AdminClient<tonic::transport::Channel>;

/// Calls an RPC on one agent. Text output: `verb` + the ID, or the agent's
/// block when `verb` is empty (show); JSON: the agent.
async fn one<F, Fut>(a: IdArgs, verb: &str, call: F) -> anyhow::Result<()>
where
    F: FnOnce(Client, AgentRequest) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Agent>, tonic::Status>>,
{
    let client = connect(&a.admin.admin_socket).await?;
    let agent = call(
        client,
        AgentRequest {
            spiffe_id: a.spiffe_id,
        },
    )
    .await
    .map_err(status_error)?
    .into_inner();
    match a.output.output {
        Output::Json => print_json(&agent_json(&agent))?,
        Output::Text if verb.is_empty() => print!("{}", agent_text(&agent)),
        Output::Text => println!("{verb}{}", agent.spiffe_id),
    }
    Ok(())
}
