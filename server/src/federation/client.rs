//! Fetching a peer trust domain's bundle from its SPIFFE bundle endpoint:
//! one HTTPS GET, the server authenticated by the relationship's profile
//! (`verify`), the answer bounded in time and size and parsed as the peer's
//! bundle before anything of it is believed.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper_util::rt::TokioIo;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::ServerName;
use signet_core::bundle::{parse_spiffe_bundle, BundleParseError, ParsedBundle};
use signet_core::TrustDomain;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A bundle document is a few KB; more is refused unread.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Connect, handshake, request and body, all of it.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a fetch gave no bundle: each a refusal the held bundle survives.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("bundle endpoint URL {0}")]
    Url(String),
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("TLS with {endpoint}: {reason}")]
    Tls { endpoint: String, reason: String },
    #[error("{endpoint} answered HTTP {status}")]
    Status { endpoint: String, status: u16 },
    #[error("{endpoint}: {reason}")]
    Http { endpoint: String, reason: String },
    #[error("{endpoint} did not answer within {}s", FETCH_TIMEOUT.as_secs())]
    Timeout { endpoint: String },
    #[error("{endpoint} sent more than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { endpoint: String },
    #[error("{endpoint} sent no valid bundle: {source}")]
    Invalid {
        endpoint: String,
        #[source]
        source: BundleParseError,
    },
    #[error("{endpoint} sent a bundle whose CA {found} is not of trust domain {expected}")]
    WrongTrustDomain {
        endpoint: String,
        expected: TrustDomain,
        found: String,
    },
    #[error("no bundle is held for {0}, the trust domain of the endpoint's SPIFFE ID: set one with `bundle set` or the relationship's --trust-domain-bundle")]
    NoEndpointBundle(TrustDomain),
    #[error("spiffe_sequence {offered} of {trust_domain} is lower than the {held} held")]
    OlderSequence {
        trust_domain: TrustDomain,
        offered: u64,
        held: u64,
    },
    #[error("storing the bundle: {0}")]
    Store(String),
}

impl FetchError {
    /// The metric label of the refusal.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Url(_) => "url",
            FetchError::Connect { .. } => "connect",
            FetchError::Tls { .. } => "tls",
            FetchError::Status { .. } | FetchError::Http { .. } => "http",
            FetchError::Timeout { .. } => "timeout",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Invalid { .. } => "invalid",
            FetchError::WrongTrustDomain { .. } => "wrong_trust_domain",
            FetchError::NoEndpointBundle(_) => "no_endpoint_bundle",
            FetchError::OlderSequence { .. } => "older_sequence",
            FetchError::Store(_) => "store",
        }
    }
}

/// GETs `url` with the server certificate judged by `verifier`, and parses
/// the answer as `td`'s bundle.
pub async fn fetch(
    url: &str,
    td: &TrustDomain,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<ParsedBundle, FetchError> {
    let endpoint = url.to_owned();
    let uri: http::Uri = url
        .parse()
        .map_err(|e| FetchError::Url(format!("{url:?}: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| FetchError::Url(format!("{url:?}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let fetched = tokio::time::timeout(FETCH_TIMEOUT, async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| FetchError::Connect {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        let mut config =
            rustls::ClientConfig::builder_with_provider(signet_core::crypto::tls_provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| tls_error(&endpoint, e))?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(host.clone())
            .map_err(|e| FetchError::Url(format!("{url:?}: {e}")))?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| tls_error(&endpoint, handshake_reason(&e)))?;
        get(&endpoint, &host, &path, tls).await
    })
    .await
    .map_err(|_| FetchError::Timeout {
        endpoint: endpoint.clone(),
    })??;
    let parsed = parse_spiffe_bundle(td, &fetched).map_err(|source| FetchError::Invalid {
        endpoint: endpoint.clone(),
        source,
    })?;
    check_trust_domain(&endpoint, td, &parsed)?;
    Ok(parsed)
}

/// What went wrong in the handshake, in words: a verifier's own reason
/// rather than rustls's debug rendering of it.
fn handshake_reason(e: &std::io::Error) -> String {
    use rustls::{CertificateError, OtherError};
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(why)))) => {
            format!("invalid peer certificate: {why}")
        }
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}

fn tls_error(endpoint: &str, e: impl std::fmt::Display) -> FetchError {
    FetchError::Tls {
        endpoint: endpoint.to_owned(),
        reason: e.to_string(),
    }
}

/// One HTTP/1.1 GET on `io`; the body, if it is a 200 within the bounds.
async fn get<T>(endpoint: &str, host: &str, path: &str, io: T) -> Result<Vec<u8>, FetchError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let http = |reason: String| FetchError::Http {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| http(e.to_string()))?;
    tokio::spawn(async move {
        // Its errors reach the request below.
        let _ = conn.await;
    });
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| http(e.to_string()))?;
    if response.status() != http::StatusCode::OK {
        return Err(FetchError::Status {
            endpoint: endpoint.to_owned(),
            status: response.status().as_u16(),
        });
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                FetchError::TooLarge {
                    endpoint: endpoint.to_owned(),
                }
            } else {
                http(e.to_string())
            }
        })?;
    Ok(body.to_bytes().to_vec())
}

/// A CA naming a SPIFFE trust domain must name the peer's: an endpoint
/// serving another trust domain's bundle (ours, say) is refused.
fn check_trust_domain(
    endpoint: &str,
    td: &TrustDomain,
    parsed: &ParsedBundle,
) -> Result<(), FetchError> {
    for der in &parsed.bundle.x509_authorities {
        let named = signet_core::x509::cert_info(der)
            .ok()
            .and_then(|info| info.spiffe_id);
        if let Some(id) = named {
            if id.trust_domain() != td {
                return Err(FetchError::WrongTrustDomain {
                    endpoint: endpoint.to_owned(),
                    expected: td.clone(),
                    found: id.to_string(),
                });
            }
        }
    }
    Ok(())
}
