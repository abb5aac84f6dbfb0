//! `signet-server bundle show [--format pem|spiffe]`.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use signet_core::bundle::spiffe_bundle;
use signet_core::jwt::{Jwk, JwtPublicKey};
use signet_proto::admin::GetBundleRequest;

use super::client::{connect, status_error};
use super::AdminArgs;
use crate::bundle::REFRESH_HINT_SECS;

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Prints the trust bundle.
    Show(ShowArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// PEM CA certificates.
    Pem,
    /// The SPIFFE bundle: a JWK Set.
    Spiffe,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[arg(long, value_enum, default_value = "pem")]
    format: Format,
}

impl BundleCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let BundleCommand::Show(a) = self;
        let mut client = connect(&a.admin.admin_socket).await?;
        let bundle = client
            .get_bundle(GetBundleRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
        match a.format {
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
}
