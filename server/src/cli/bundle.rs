//! `signet-server bundle show | set | list | delete`: this trust domain's
//! bundle, and the bundles of federated trust domains (`--trust-domain`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use signet_core::bundle::spiffe_bundle;
use signet_core::jwt::{Jwk, JwtPublicKey};
use signet_proto::admin::{
    FederatedBundle, GetBundleRequest, ListFederatedBundlesRequest, SetFederatedBundleRequest,
    TrustDomainRequest,
};

use super::client::{connect, status_error};
use super::{print_json, print_list, rfc3339, AdminArgs, Output, OutputArgs};
use crate::bundle::REFRESH_HINT_SECS;

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Prints the trust bundle, or a federated trust domain's.
    Show(ShowArgs),
    /// Sets a federated trust domain's bundle from a file (static
    /// federation: no bundle endpoint).
    Set(SetArgs),
    /// Lists the federated trust domains' bundles.
    List(ListArgs),
    /// Deletes a federated trust domain's bundle.
    Delete(DeleteArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// PEM CA certificates.
    Pem,
    /// The SPIFFE bundle: a JWK Set.
    Spiffe,
}

impl Format {
    fn wire(self) -> &'static str {
        match self {
            Format::Pem => "pem",
            Format::Spiffe => "spiffe",
        }
    }
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[arg(long, value_enum, default_value = "pem")]
    format: Format,
    /// A federated trust domain (e.g. b.test); this one's when absent.
    #[arg(long)]
    trust_domain: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[arg(long)]
    trust_domain: String,
    /// The bundle file (`-`: stdin).
    #[arg(long)]
    path: PathBuf,
    #[arg(long, value_enum, default_value = "spiffe")]
    format: Format,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[arg(long)]
    trust_domain: String,
}

pub fn federated_json(b: &FederatedBundle) -> Value {
    json!({
        "trust_domain": b.trust_domain,
        "sequence": b.sequence,
        "source": b.source,
        "updated_at": b.updated_at,
        "x509_authorities": b.x509_authorities,
        "jwt_authorities": b.jwt_authorities,
        "bundle": serde_json::from_str::<Value>(&b.document).unwrap_or(Value::Null),
    })
}

pub fn federated_text(b: &FederatedBundle) -> String {
    [
        ("Trust domain", b.trust_domain.clone()),
        ("Sequence", b.sequence.to_string()),
        ("Source", b.source.clone()),
        ("Updated", rfc3339(b.updated_at)),
        (
            "Authorities",
            format!("{} X.509, {} JWT", b.x509_authorities, b.jwt_authorities),
        ),
    ]
    .into_iter()
    .map(|(k, v)| format!("{k:<13}: {v}\n"))
    .collect()
}

/// A file's bytes (`-`: stdin).
pub async fn read_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        return tokio::task::spawn_blocking(|| {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
        })
        .await?
        .context("reading stdin");
    }
    tokio::fs::read(path)
        .await
        .with_context(|| path.display().to_string())
}

/// The document's X.509 authorities as PEM.
fn document_pem(td: &str, document: &str) -> anyhow::Result<String> {
    let td =
        signet_core::TrustDomain::new(td).context("the server sent an invalid trust domain")?;
    let parsed = signet_core::bundle::parse_spiffe_bundle(&td, document.as_bytes())
        .context("the server sent an invalid bundle")?;
    Ok(signet_core::pem::encode_certs(
        parsed.bundle.x509_authorities.iter().map(Vec::as_slice),
    ))
}

impl BundleCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            BundleCommand::Show(a) => match a.trust_domain {
                Some(td) => show_federated(&a.admin, td, a.format).await,
                None => show_own(&a.admin, a.format).await,
            },
            BundleCommand::Set(a) => {
                let content = read_file(&a.path).await?;
                let set = connect(&a.admin.admin_socket)
                    .await?
                    .set_federated_bundle(SetFederatedBundleRequest {
                        trust_domain: a.trust_domain,
                        content,
                        format: a.format.wire().to_owned(),
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match a.output.output {
                    Output::Json => print_json(&federated_json(&set))?,
                    Output::Text => println!("Set the bundle of {}", set.trust_domain),
                }
                Ok(())
            }
            BundleCommand::List(a) => {
                let bundles = connect(&a.admin.admin_socket)
                    .await?
                    .list_federated_bundles(ListFederatedBundlesRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .bundles;
                print_list(
                    a.output.output,
                    "bundles",
                    ("federated bundle", "federated bundles"),
                    &bundles,
                    federated_json,
                    federated_text,
                )
            }
            BundleCommand::Delete(a) => {
                let gone = connect(&a.admin.admin_socket)
                    .await?
                    .delete_federated_bundle(TrustDomainRequest {
                        trust_domain: a.trust_domain,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                match a.output.output {
                    Output::Json => print_json(&federated_json(&gone))?,
                    Output::Text => println!("Deleted the bundle of {}", gone.trust_domain),
                }
                Ok(())
            }
        }
    }
}

async fn show_federated(admin: &AdminArgs, td: String, format: Format) -> anyhow::Result<()> {
    let bundle = connect(&admin.admin_socket)
        .await?
        .get_federated_bundle(TrustDomainRequest { trust_domain: td })
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Pem => print!("{}", document_pem(&bundle.trust_domain, &bundle.document)?),
        Format::Spiffe => {
            let doc: Value = serde_json::from_str(&bundle.document)
                .context("the server sent an invalid bundle")?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    Ok(())
}

async fn show_own(admin: &AdminArgs, format: Format) -> anyhow::Result<()> {
    let mut client = connect(&admin.admin_socket).await?;
    let bundle = client
        .get_bundle(GetBundleRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Pem => print!(
            "{}",
            signet_core::pem::encode_certs(bundle.x509_authorities.iter().map(Vec::as_slice))
        ),
        Format::Spiffe => {
            let jwt_keys = bundle
                .jwt_authorities
                .iter()
                .map(|a| {
                    let jwk: Jwk = serde_json::from_str(&a.jwk)
                        .with_context(|| format!("JWT authority {:?}: invalid JWK", a.kid))?;
                    let key = JwtPublicKey::from_jwk(&jwk)
                        .with_context(|| format!("JWT authority {:?}", a.kid))?;
                    Ok((a.kid.clone(), key))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let refresh_hint = match bundle.refresh_hint {
                0 => REFRESH_HINT_SECS,
                s => s,
            };
            let doc = spiffe_bundle(
                &bundle.x509_authorities,
                &jwt_keys,
                bundle.sequence,
                refresh_hint,
            )?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    Ok(())
}
