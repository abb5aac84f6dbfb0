//! `signet-server bundle show [--format pem|spiffe]`.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use signet_proto::admin::GetBundleRequest;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::client::{connect, status_error};
use super::AdminArgs;

/// Seconds a bundle consumer should wait before fetching the bundle again.
const REFRESH_HINT_SECS: u64 = 300;
const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";
const P256_OID: &str = "1.2.840.10045.3.1.7";

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
                let doc = spiffe_bundle(&bundle.x509_authorities, bundle.sequence)?;
                println!("{}", serde_json::to_string_pretty(&doc)?);
            }
        }
        Ok(())
    }
}

/// The SPIFFE bundle (JWKS) for X.509 authorities: one `x509-svid` key per CA.
pub fn spiffe_bundle(authorities: &[Vec<u8>], sequence: u64) -> anyhow::Result<Value> {
    let keys = authorities
        .iter()
        .map(|der| x509_jwk(der))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(json!({
        "keys": keys,
        "spiffe_sequence": sequence,
        "spiffe_refresh_hint": REFRESH_HINT_SECS,
    }))
}

fn x509_jwk(der: &[u8]) -> anyhow::Result<Value> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("bundle holds an unreadable certificate: {e}"))?;
    let spki = cert.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    if spki.algorithm.algorithm.to_id_string() != EC_PUBLIC_KEY_OID
        || curve.as_deref() != Some(P256_OID)
    {
        anyhow::bail!("only P-256 CA keys can be written as a SPIFFE bundle");
    }
    // An uncompressed point: 0x04, then X and Y, 32 bytes each.
    let point = spki.subject_public_key.data.as_ref();
    let (Some(0x04), Some(x), Some(y)) = (point.first(), point.get(1..33), point.get(33..65))
    else {
        anyhow::bail!("CA key is not an uncompressed P-256 point");
    };
    Ok(json!({
        "kty": "EC",
        "use": "x509-svid",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(x),
        "y": URL_SAFE_NO_PAD.encode(y),
        "x5c": [STANDARD.encode(der)],
    }))
}
