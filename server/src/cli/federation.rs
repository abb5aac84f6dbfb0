//! `signet-server federation create | list | show | update | delete |
//! refresh`: relationships with other trust domains' bundle endpoints.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use signet_proto::admin::{
    FederationRelationship, ListFederationRelationshipsRequest, TrustDomainRequest,
};

use super::bundle::{federated_json, federated_text, read_file, Format};
use super::client::{connect, status_error};
use super::{print_json, print_list, rfc3339, AdminArgs, Output, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Federates with a trust domain: its bundle is fetched from its bundle
    /// endpoint at the refresh hint the endpoint gives.
    Create(RelationshipArgs),
    /// Lists the relationships, each with the bundle held and the last fetch.
    List(ListArgs),
    /// Shows one relationship.
    Show(TrustDomainArgs),
    /// Changes a relationship's endpoint or profile.
    Update(RelationshipArgs),
    /// Deletes a relationship (its bundle stays until `bundle delete`).
    Delete(TrustDomainArgs),
    /// Fetches the trust domain's bundle now; prints the bundle held.
    Refresh(TrustDomainArgs),
}

#[derive(Debug, Args)]
pub struct RelationshipArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[arg(long)]
    trust_domain: String,
    /// https://HOST[:PORT][/PATH] of the peer's SPIFFE bundle endpoint.
    #[arg(long)]
    bundle_endpoint_url: String,
    /// https_spiffe (the endpoint presents an X509-SVID) or https_web (a
    /// Web PKI certificate).
    #[arg(long, value_parser = ["https_spiffe", "https_web"])]
    profile: String,
    /// https_spiffe: the SPIFFE ID the endpoint presents, e.g.
    /// spiffe://b.test/signet/server or spiffe://b.test/spire/server.
    #[arg(long)]
    endpoint_spiffe_id: Option<String>,
    /// https_spiffe: the peer's bundle, to check the endpoint with at first
    /// contact (when the endpoint's trust domain is the peer's).
    #[arg(long, value_name = "FILE")]
    trust_domain_bundle: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "spiffe")]
    trust_domain_bundle_format: Format,
    /// https_web: CA certificates (PEM) to check the endpoint with instead
    /// of the system's roots.
    #[arg(long, value_name = "FILE")]
    ca_bundle: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct TrustDomainArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[arg(long)]
    trust_domain: String,
}

impl RelationshipArgs {
    async fn request(self) -> anyhow::Result<(AdminArgs, Output, FederationRelationship)> {
        let trust_domain_bundle = match &self.trust_domain_bundle {
            Some(path) => read_file(path).await?,
            None => Vec::new(),
        };
        let ca_bundle = match &self.ca_bundle {
            Some(path) => read_file(path).await?,
            None => Vec::new(),
        };
        let format = match self.trust_domain_bundle_format {
            Format::Pem => "pem",
            Format::Spiffe => "spiffe",
        };
        Ok((
            self.admin,
            self.output.output,
            FederationRelationship {
                trust_domain: self.trust_domain,
                bundle_endpoint_url: self.bundle_endpoint_url,
                profile: self.profile,
                endpoint_spiffe_id: self.endpoint_spiffe_id.unwrap_or_default(),
                trust_domain_bundle,
                trust_domain_bundle_format: format.to_owned(),
                ca_bundle,
                ..Default::default()
            },
        ))
    }
}

pub fn relationship_json(r: &FederationRelationship) -> Value {
    json!({
        "trust_domain": r.trust_domain,
        "bundle_endpoint_url": r.bundle_endpoint_url,
        "profile": r.profile,
        "endpoint_spiffe_id": r.endpoint_spiffe_id,
        "created_at": r.created_at,
        "last_fetch_at": r.last_fetch_at,
        "last_error": r.last_error,
        "bundle": r.bundle.as_ref().map(federated_json),
    })
}

fn relationship_text(r: &FederationRelationship) -> String {
    let mut lines = vec![
        ("Trust domain", r.trust_domain.clone()),
        ("Endpoint URL", r.bundle_endpoint_url.clone()),
        ("Profile", r.profile.clone()),
    ];
    if !r.endpoint_spiffe_id.is_empty() {
        lines.push(("Endpoint ID", r.endpoint_spiffe_id.clone()));
    }
    lines.push(("Created", rfc3339(r.created_at)));
    lines.push((
        "Last fetch",
        if r.last_fetch_at == 0 {
            "never".to_owned()
        } else {
            rfc3339(r.last_fetch_at)
        },
    ));
    if !r.last_error.is_empty() {
        lines.push(("Last error", r.last_error.clone()));
    }
    let mut text: String = lines
        .into_iter()
        .map(|(k, v)| format!("{k:<13}: {v}\n"))
        .collect();
    match &r.bundle {
        Some(b) => text.push_str(&federated_text(b).replacen("Trust domain", "Bundle of", 1)),
        None => text.push_str("Bundle       : none held yet\n"),
    }
    text
}

fn print_one(output: Output, r: &FederationRelationship) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(&relationship_json(r)),
        Output::Text => {
            print!("{}", relationship_text(r));
            Ok(())
        }
    }
}

impl FederationCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            FederationCommand::Create(a) => {
                let (admin, output, req) = a.request().await?;
                let created = connect(&admin.admin_socket)
                    .await?
                    .create_federation_relationship(req)
                    .await
                    .map_err(status_error)?
                    .into_inner();
                print_one(output, &created)
            }
            FederationCommand::Update(a) => {
                let (admin, output, req) = a.request().await?;
                let updated = connect(&admin.admin_socket)
                    .await?
                    .update_federation_relationship(req)
                    .await
                    .map_err(status_error)?
                    .into_inner();
                print_one(output, &updated)
            }
            FederationCommand::List(a) => {
                let all = connect(&a.admin.admin_socket)
                    .await?
                    .list_federation_relationships(ListFederationRelationshipsRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .relationships;
                print_list(
                    a.output.output,
                    "relationships",
                    ("federation relationship", "federation relationships"),
                    &all,
                    relationship_json,
                    relationship_text,
                )
            }
            FederationCommand::Show(a) => {
                let found = connect(&a.admin.admin_socket)
                    .await?
                    .get_federation_relationship(TrustDomainRequest {
                        trust_domain: a.trust_domain,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                print_one(a.output.output, &found)
            }
            FederationCommand::Delete(a) => {
                let gone = connect(&a.admin.admin_socket)
                    .await?
                    .delete_federation_relationship(TrustDomainRequest {
                        trust_domain: a.trust_domain,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match a.output.output {
                    Output::Json => print_json(&relationship_json(&gone))?,
                    Output::Text => println!(
                        "Deleted the federation relationship with {}",
                        gone.trust_domain
                    ),
                }
                Ok(())
            }
            FederationCommand::Refresh(a) => {
                let held = connect(&a.admin.admin_socket)
                    .await?
                    .refresh_federation_relationship(TrustDomainRequest {
                        trust_domain: a.trust_domain,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match a.output.output {
                    Output::Json => print_json(&federated_json(&held))?,
                    Output::Text => print!("{}", federated_text(&held)),
                }
                Ok(())
            }
        }
    }
}
