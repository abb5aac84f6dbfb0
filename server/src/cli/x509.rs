//! `signet-server x509 mint`: an X.509-SVID outside any agent. The key is
//! generated here and only a CSR goes to the server. Prints chain, key and
//! bundle as PEM (like SPIRE's `x509 mint`), writes them to a directory
//! with `--write`, or prints JSON.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use rcgen::KeyPair;
use signet_core::clock::unix_seconds;
use signet_core::pem::encode_certs;
use signet_core::x509::{build_csr, cert_info};
use signet_core::SpiffeId;
use signet_proto::admin::MintX509SvidRequest;

use super::client::{connect, status_error};
use super::{duration_arg, print_json, ttl_secs, AdminArgs, Output, OutputArgs};

pub const SVID_FILE: &str = "svid.pem";
pub const KEY_FILE: &str = "key.pem";
pub const BUNDLE_FILE: &str = "bundle.pem";

#[derive(Debug, Subcommand)]
pub enum X509Command {
    /// Mints an X.509-SVID with a fresh local P-256 key.
    Mint(MintArgs),
}

#[derive(Debug, Args)]
pub struct MintArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// SPIFFE ID of the SVID, in the server's trust domain.
    #[arg(long)]
    spiffe_id: String,
    /// Lifetime (default: the server's X.509-SVID TTL), capped by the CA.
    #[arg(long, value_parser = duration_arg)]
    ttl: Option<Duration>,
    /// DNS SAN; repeat for several.
    #[arg(long = "dns")]
    dns: Vec<String>,
    /// Writes svid.pem, key.pem (0600) and bundle.pem into this directory.
    #[arg(long)]
    write: Option<PathBuf>,
}

/// What the server issued, as PEM.
pub struct MintedX509 {
    pub spiffe_id: SpiffeId,
    pub svid_pem: String,
    pub key_pem: String,
    pub bundle_pem: String,
    pub expires_at: i64,
}

impl X509Command {
    pub async fn run(self) -> anyhow::Result<()> {
        let X509Command::Mint(a) = self;
        let minted = mint(&a).await?;
        let written = match &a.write {
            Some(dir) => Some(write_files(dir, &minted)?),
            None => None,
        };
        match (a.output.output, written) {
            (Output::Json, _) => print_json(&serde_json::json!({
                "spiffe_id": minted.spiffe_id.to_string(),
                "svid_pem": minted.svid_pem,
                "key_pem": minted.key_pem,
                "bundle_pem": minted.bundle_pem,
                "expires_at": minted.expires_at,
            }))?,
            (Output::Text, Some([svid, key, bundle])) => {
                println!("X.509-SVID written to {}", svid.display());
                println!("Private key written to {}", key.display());
                println!("Bundle written to {}", bundle.display());
            }
            (Output::Text, None) => {
                print!("{}{}{}", minted.svid_pem, minted.key_pem, minted.bundle_pem);
            }
        }
        Ok(())
    }
}

async fn mint(a: &MintArgs) -> anyhow::Result<MintedX509> {
    let id = SpiffeId::parse_with_path(&a.spiffe_id)
        .with_context(|| format!("invalid --spiffe-id {:?}", a.spiffe_id))?;
    let ttl = ttl_secs("--ttl", a.ttl)?;
    let key = KeyPair::generate().context("generating the private key")?;
    let csr = build_csr(&key, &id)?;
    let mut client = connect(&a.admin.admin_socket).await?;
    let resp = client
        .mint_x509_svid(MintX509SvidRequest {
            csr,
            ttl,
            dns_names: a.dns.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let leaf = resp
        .svid_chain
        .first()
        .context("the server returned an empty SVID chain")?;
    let info = cert_info(leaf)?;
    Ok(MintedX509 {
        spiffe_id: id,
        svid_pem: encode_certs(resp.svid_chain.iter().map(Vec::as_slice)),
        key_pem: key.serialize_pem(),
        bundle_pem: encode_certs(resp.bundle.iter().map(Vec::as_slice)),
        expires_at: unix_seconds(info.not_after),
    })
}

/// Writes the three files; the key 0600 and atomically. Returns their paths.
fn write_files(dir: &Path, m: &MintedX509) -> anyhow::Result<[PathBuf; 3]> {
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let paths = [
        dir.join(SVID_FILE),
        dir.join(KEY_FILE),
        dir.join(BUNDLE_FILE),
    ];
    let [svid, key, bundle] = &paths;
    for (path, text, mode) in [
        (key, &m.key_pem, 0o600),
        (svid, &m.svid_pem, 0o644),
        (bundle, &m.bundle_pem, 0o644),
    ] {
        signet_runtime::fs::write_atomic(path, text.as_bytes(), mode)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(paths)
}
