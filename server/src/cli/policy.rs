//! `signet-server policy create|update|list|show|delete|validate`: Cedar
//! authorization policies, validated by the server against the Signet
//! schema (errors name the line and column) and the trust domains it knows
//! before they are stored; agents get every change at once.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use signet_proto::admin::{ListPoliciesRequest, Policy, PolicyRequest};

use super::client::{connect, status_error};
use super::{print_json, rfc3339, AdminArgs, Output, OutputArgs};

/// A policy file bigger than this is refused before it is sent.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Stores a new policy source (one or more Cedar policies) under a name.
    Create(WriteArgs),
    /// Replaces a stored policy source; an invalid one never replaces it.
    Update(WriteArgs),
    /// Lists the stored policy sources.
    List(ListArgs),
    /// Prints one stored policy source.
    Show(NameArgs),
    /// Deletes a stored policy source.
    Delete(NameArgs),
    /// Checks a policy file against the schema and the known trust
    /// domains without storing it.
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// 1 to 64 letters, digits, '.', '_' or '-'.
    #[arg(long)]
    name: String,
    /// The Cedar policy file.
    #[arg(long)]
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[arg(long)]
    name: String,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[arg(long)]
    file: PathBuf,
    /// The name errors are reported under (default: the file's stem).
    #[arg(long)]
    name: Option<String>,
}

fn read_policy(path: &Path) -> anyhow::Result<String> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_POLICY_BYTES,
        "{} is {size} bytes; a policy file may hold at most {MAX_POLICY_BYTES}",
        path.display()
    );
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} as UTF-8", path.display()))
}

fn policy_json(p: &Policy, with_text: bool) -> serde_json::Value {
    let mut v = json!({
        "name": p.name,
        "policy_ids": p.policy_ids,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    });
    if with_text {
        v["text"] = json!(p.text);
    }
    v
}

impl PolicyCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            PolicyCommand::Create(a) => write(a, false).await,
            PolicyCommand::Update(a) => write(a, true).await,
            PolicyCommand::List(a) => {
                let mut client = connect(&a.admin.admin_socket).await?;
                let list = client
                    .list_policies(ListPoliciesRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match a.output.output {
                    Output::Json => print_json(&json!({
                        "policies": list.policies.iter().map(|p| policy_json(p, false)).collect::<Vec<_>>()
                    }))?,
                    Output::Text => {
                        println!(
                            "Found {} policy source{}",
                            list.policies.len(),
                            if list.policies.len() == 1 { "" } else { "s" }
                        );
                        for p in &list.policies {
                            println!();
                            println!("Name         : {}", p.name);
                            println!("Policies     : {}", p.policy_ids.join(", "));
                            println!("Updated      : {}", rfc3339(p.updated_at));
                        }
                    }
                }
                Ok(())
            }
            PolicyCommand::Show(a) => {
                let mut client = connect(&a.admin.admin_socket).await?;
                let p = client
                    .get_policy(PolicyRequest { name: a.name })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match a.output.output {
                    Output::Json => print_json(&policy_json(&p, true))?,
                    Output::Text => print!("{}", p.text),
                }
                Ok(())
            }
            PolicyCommand::Delete(a) => {
                let mut client = connect(&a.admin.admin_socket).await?;
                let p = client
                    .delete_policy(PolicyRequest { name: a.name })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match a.output.output {
                    Output::Json => print_json(&policy_json(&p, false))?,
                    Output::Text => println!("Policy {} deleted", p.name),
                }
                Ok(())
            }
            PolicyCommand::Validate(a) => {
                let text = read_policy(&a.file)?;
                let name = a.name.unwrap_or_else(|| {
                    a.file
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "policy".into())
                });
                let mut client = connect(&a.admin.admin_socket).await?;
                let p = client
                    .validate_policy(Policy {
                        name,
                        text,
                        ..Policy::default()
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match a.output.output {
                    Output::Json => {
                        print_json(&json!({"valid": true, "policy_ids": p.policy_ids}))?
                    }
                    Output::Text => println!("Valid: {}", p.policy_ids.join(", ")),
                }
                Ok(())
            }
        }
    }
}

async fn write(a: WriteArgs, replace: bool) -> anyhow::Result<()> {
    let text = read_policy(&a.file)?;
    let mut client = connect(&a.admin.admin_socket).await?;
    let policy = Policy {
        name: a.name,
        text,
        ..Policy::default()
    };
    let stored = if replace {
        client.update_policy(policy).await
    } else {
        client.create_policy(policy).await
    }
    .map_err(status_error)?
    .into_inner();
    match a.output.output {
        Output::Json => print_json(&policy_json(&stored, false))?,
        Output::Text => println!(
            "Policy {} {}: {}",
            stored.name,
            if replace { "updated" } else { "created" },
            stored.policy_ids.join(", ")
        ),
    }
    Ok(())
}
