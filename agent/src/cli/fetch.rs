//! `signet-agent api fetch x509`: one X.509-SVID response, printed like
//! SPIRE's CLI (or as JSON), optionally written to a directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use signet_core::x509::cert_info;
use signet_proto::workload::{X509svidRequest, X509svidResponse};

use super::client::{self, format_time};
use crate::storage::write_atomic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FetchX509Args {
    /// Workload API socket (else $SPIFFE_ENDPOINT_SOCKET, else the default).
    #[arg(long)]
    pub socket_path: Option<PathBuf>,
    /// Write svid.N.pem, svid.N.key and bundle.N.pem into this directory.
    #[arg(long)]
    pub write: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Seconds to keep retrying while the agent is unavailable.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

pub async fn run(args: FetchX509Args) -> anyhow::Result<()> {
    let socket = client::resolve_socket(args.socket_path.as_deref())?;
    let started = tokio::time::Instant::now();
    let response = fetch_with_retry(&socket, Duration::from_secs(args.timeout)).await?;
    let elapsed = started.elapsed();
    let svids = decode(&response)?;
    match args.output {
        Output::Text => print!("{}", render_text(&svids, elapsed)),
        Output::Json => println!("{}", render_json(&svids)),
    }
    if let Some(dir) = &args.write {
        write_dir(dir, &svids, &response)?;
    }
    Ok(())
}

/// Retries connection failures and `Unavailable` until `timeout`.
pub async fn fetch_with_retry(
    socket: &Path,
    timeout: Duration,
) -> anyhow::Result<X509svidResponse> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let attempt = tokio::time::timeout_at(deadline, fetch_once(socket)).await;
        let err = match attempt {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) => e,
            Err(_) => anyhow::bail!(
                "timed out after {}s waiting for an X.509-SVID",
                timeout.as_secs()
            ),
        };
        let retryable = match err.downcast_ref::<StatusDisplay>() {
            Some(s) => s.0.code() == tonic::Code::Unavailable,
            None => true,
        };
        if !retryable || tokio::time::Instant::now() >= deadline {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn fetch_once(socket: &Path) -> anyhow::Result<X509svidResponse> {
    let mut api = client::connect(socket).await?;
    let call = api
        .fetch_x509svid(client::request(X509svidRequest {}))
        .await;
    first_message(call, "an SVID").await
}

/// The first message of a Workload API stream; `what` names it in the error
/// when the stream ends empty.
pub async fn first_message<T>(
    call: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
    what: &str,
) -> anyhow::Result<T> {
    call.map_err(status_error)?
        .into_inner()
        .message()
        .await
        .map_err(status_error)?
        .with_context(|| format!("the Workload API closed the stream without {what}"))
}

/// Keeps the status (for retry decisions) with a readable message.
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::Error::new(StatusDisplay(s))
}

#[derive(Debug)]
pub struct StatusDisplay(tonic::Status);

impl StatusDisplay {
    pub fn code(&self) -> tonic::Code {
        self.0.code()
    }
}

impl std::fmt::Display for StatusDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rpc error: code = {:?} desc = {}",
            self.0.code(),
            self.0.message()
        )
    }
}

impl std::error::Error for StatusDisplay {}

/// One SVID with its chain and bundle split into certificates.
pub struct DecodedSvid {
    pub spiffe_id: String,
    pub hint: String,
    pub chain: Vec<Vec<u8>>,
    pub key_pkcs8: zeroize::Zeroizing<Vec<u8>>,
    pub bundle: Vec<Vec<u8>>,
}

pub fn decode(response: &X509svidResponse) -> anyhow::Result<Vec<DecodedSvid>> {
    response
        .svids
        .iter()
        .map(|s| {
            Ok(DecodedSvid {
                spiffe_id: s.spiffe_id.clone(),
                hint: s.hint.clone(),
                chain: split_der(&s.x509_svid).context("x509_svid")?,
                key_pkcs8: zeroize::Zeroizing::new(s.x509_svid_key.clone()),
                bundle: split_der(&s.bundle).context("bundle")?,
            })
        })
        .collect()
}

/// Splits concatenated DER certificates.
pub fn split_der(mut bytes: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut certs = Vec::new();
    while !bytes.is_empty() {
        let (rest, _) = x509_parser::parse_x509_certificate(bytes)
            .map_err(|e| anyhow::anyhow!("malformed certificate: {e}"))?;
        let len = bytes.len() - rest.len();
        let (cert, tail) = bytes.split_at(len);
        certs.push(cert.to_vec());
        bytes = tail;
    }
    Ok(certs)
}

fn render_text(svids: &[DecodedSvid], elapsed: Duration) -> String {
    let mut out = format!(
        "Received {} svid after {:.3}ms\n",
        svids.len(),
        elapsed.as_secs_f64() * 1000.0
    );
    for svid in svids {
        out.push_str(&format!("\nSPIFFE ID:\t\t{}\n", svid.spiffe_id));
        if !svid.hint.is_empty() {
            out.push_str(&format!("Hint:\t\t\t{}\n", svid.hint));
        }
        if let Some(info) = svid.chain.first().and_then(|l| cert_info(l).ok()) {
            out.push_str(&format!(
                "SVID Valid After:\t{}\n",
                format_time(info.not_before)
            ));
            out.push_str(&format!(
                "SVID Valid Until:\t{}\n",
                format_time(info.not_after)
            ));
        }
        for (i, ca) in svid.bundle.iter().enumerate() {
            if let Ok(info) = cert_info(ca) {
                let n = i + 1;
                out.push_str(&format!(
                    "CA #{n} Valid After:\t{}\n",
                    format_time(info.not_before)
                ));
                out.push_str(&format!(
                    "CA #{n} Valid Until:\t{}\n",
                    format_time(info.not_after)
                ));
            }
        }
    }
    out
}

fn render_json(svids: &[DecodedSvid]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = svids
        .iter()
        .map(|s| {
            let not_after = s
                .chain
                .first()
                .and_then(|l| cert_info(l).ok())
                .map(|i| signet_core::clock::unix_seconds(i.not_after))
                .unwrap_or(0);
            serde_json::json!({
                "spiffe_id": s.spiffe_id,
                "hint": s.hint,
                "not_after": not_after,
                "x509_svid_pem": pem_certs(&s.chain),
                "bundle_pem": pem_certs(&s.bundle),
            })
        })
        .collect();
    serde_json::json!({ "svids": list })
}

fn pem_certs(certs: &[Vec<u8>]) -> String {
    signet_core::pem::encode_certs(certs.iter().map(Vec::as_slice))
}

fn write_dir(dir: &Path, svids: &[DecodedSvid], _raw: &X509svidResponse) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (i, s) in svids.iter().enumerate() {
        let cert_path = dir.join(format!("svid.{i}.pem"));
        let key_path = dir.join(format!("svid.{i}.key"));
        let bundle_path = dir.join(format!("bundle.{i}.pem"));
        write_atomic(&cert_path, pem_certs(&s.chain).as_bytes(), 0o644)?;
        write_atomic(
            &key_path,
            signet_core::pem::encode_private_key(&s.key_pkcs8).as_bytes(),
            0o600,
        )?;
        write_atomic(&bundle_path, pem_certs(&s.bundle).as_bytes(), 0o644)?;
        println!("Writing SVID #{i} to file {}.", cert_path.display());
        println!("Writing key #{i} to file {}.", key_path.display());
        println!("Writing bundle #{i} to file {}.", bundle_path.display());
    }
    Ok(())
}
