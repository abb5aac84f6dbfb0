//! This trust domain's SPIFFE bundle endpoint: HTTPS GET returns the bundle
//! document (every server of a group serves the same one: the union of the
//! authorities and the shared sequence). `https_spiffe` presents the
//! server's SVID; `https_web` a Web PKI certificate from files, reloaded
//! when they change.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use rustls::server::ResolvesServerCert;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::api::tls::ServerSvidResolver;
use crate::ca::{CertificateAuthority, Snapshot};
use crate::http_listener::{reply, Listener, Reply, WebCert};
use crate::telemetry::Metrics;

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 1024;

/// How the endpoint authenticates itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeProfile {
    HttpsSpiffe,
    HttpsWeb {
        cert_path: PathBuf,
        key_path: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSettings {
    pub bind: SocketAddr,
    pub profile: ServeProfile,
    /// `spiffe_refresh_hint` of the document served.
    pub refresh_hint: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("binding the bundle endpoint to {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("bundle endpoint certificate {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("bundle endpoint TLS: {0}")]
    Tls(#[from] rustls::Error),
}

impl From<crate::http_listener::CertError> for EndpointError {
    fn from(e: crate::http_listener::CertError) -> Self {
        EndpointError::Certificate {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// The bound endpoint: where it listens, and its task (stopped by `stop`).
pub struct RunningEndpoint {
    pub addr: SocketAddr,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Binds and serves until `stop` turns true.
pub async fn start(
    settings: EndpointSettings,
    ca: Arc<CertificateAuthority>,
    svid: Arc<ServerSvidResolver>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<RunningEndpoint, EndpointError> {
    let mut tasks = Vec::new();
    let resolver: Arc<dyn ResolvesServerCert> = match &settings.profile {
        ServeProfile::HttpsSpiffe => svid,
        ServeProfile::HttpsWeb {
            cert_path,
            key_path,
        } => {
            let web = Arc::new(
                WebCert::load("bundle endpoint", cert_path.clone(), key_path.clone()).await?,
            );
            tasks.push(tokio::spawn(web.clone().reload_when_changed()));
            web
        }
    };
    let mut config =
        rustls::ServerConfig::builder_with_provider(signet_core::crypto::tls_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = TcpListener::bind(settings.bind)
        .await
        .map_err(|e| EndpointError::Bind(settings.bind, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| EndpointError::Bind(settings.bind, e))?;
    let document = Arc::new(Document {
        authorities: ca.subscribe(),
        refresh_hint: settings.refresh_hint.as_secs(),
        cached: Mutex::new(None),
    });
    let listening = Listener {
        what: "bundle endpoint",
        max_connections: MAX_CONNECTIONS,
        tls: Some(TlsAcceptor::from(Arc::new(config))),
    };
    tasks.push(tokio::spawn(listening.serve(
        listener,
        stop,
        move |req, _conn| {
            let answered = answer(&req, &document, &metrics);
            async move { answered }
        },
    )));
    tracing::info!(%addr, profile = ?settings.profile, "serving the SPIFFE bundle endpoint");
    Ok(RunningEndpoint { addr, tasks })
}

fn answer(req: &hyper::Request<Incoming>, document: &Document, metrics: &Metrics) -> Reply {
    if req.method() != http::Method::GET {
        return reply(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "GET only\n",
            "text/plain",
        );
    }
    match document.current() {
        Some(doc) => {
            metrics.bundle_endpoint_request();
            reply(http::StatusCode::OK, doc, "application/json")
        }
        None => reply(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "the bundle cannot be encoded\n",
            "text/plain",
        ),
    }
}

/// The document, encoded once per published snapshot of the authorities.
struct Document {
    authorities: watch::Receiver<Arc<Snapshot>>,
    refresh_hint: u64,
    /// Held only to compare and clone, never across an await.
    cached: Mutex<Option<(Arc<Snapshot>, bytes::Bytes)>>,
}

impl Document {
    fn current(&self) -> Option<bytes::Bytes> {
        let snapshot = self.authorities.borrow().clone();
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((of, doc)) = cached.as_ref() {
            if Arc::ptr_eq(of, &snapshot) {
                return Some(doc.clone());
            }
        }
        let doc = match snapshot.bundle.to_spiffe_document(self.refresh_hint) {
            Ok(text) => bytes::Bytes::from(text),
            Err(e) => {
                tracing::error!(error = %e, "encoding the bundle document failed");
                return None;
            }
        };
        *cached = Some((snapshot, doc.clone()));
        Some(doc)
    }
}
