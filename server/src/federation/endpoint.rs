//! This trust domain's SPIFFE bundle endpoint: HTTPS GET returns the bundle
//! document (every server of a group serves the same one: the union of the
//! authorities and the shared sequence). `https_spiffe` presents the
//! server's SVID; `https_web` a Web PKI certificate from files, reloaded
//! when they change.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::api::tls::ServerSvidResolver;
use crate::ca::{CertificateAuthority, Snapshot};
use crate::telemetry::Metrics;

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 1024;
/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the https_web certificate files are looked at.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

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
            let web = Arc::new(WebCert::load(cert_path.clone(), key_path.clone()).await?);
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
    tasks.push(tokio::spawn(serve(
        listener,
        TlsAcceptor::from(Arc::new(config)),
        document,
        metrics,
        stop,
    )));
    tracing::info!(%addr, profile = ?settings.profile, "serving the SPIFFE bundle endpoint");
    Ok(RunningEndpoint { addr, tasks })
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    document: Arc<Document>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "bundle endpoint accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let document = document.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "bundle endpoint TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(move |req| {
                let document = document.clone();
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&req, &document, &metrics)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "bundle endpoint connection ended");
            }
        });
    }
}

fn answer(
    req: &hyper::Request<Incoming>,
    document: &Document,
    metrics: &Metrics,
) -> hyper::Response<Full<bytes::Bytes>> {
    let response = |status: http::StatusCode, body: bytes::Bytes, kind: &'static str| {
        let mut r = hyper::Response::new(Full::new(body));
        *r.status_mut() = status;
        if let Ok(v) = http::HeaderValue::from_str(kind) {
            r.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        r
    };
    if req.method() != http::Method::GET {
        return response(
            http::StatusCode::METHOD_NOT_ALLOWED,
            bytes::Bytes::from_static(b"GET only\n"),
            "text/plain",
        );
    }
    match document.current() {
        Some(doc) => {
            metrics.bundle_endpoint_request();
            response(http::StatusCode::OK, doc, "application/json")
        }
        None => response(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            bytes::Bytes::from_static(b"the bundle cannot be encoded\n"),
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

/// An https_web certificate and key from files, swapped in when either
/// file's modification time changes (a renewed certificate needs no
/// restart). A file that does not load keeps the one served.
struct WebCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl std::fmt::Debug for WebCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebCert")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

async fn modified(path: &PathBuf) -> Option<SystemTime> {
    tokio::fs::metadata(path).await.ok()?.modified().ok()
}

async fn load_key(cert_path: &PathBuf, key_path: &PathBuf) -> Result<CertifiedKey, EndpointError> {
    let bad = |path: &PathBuf, reason: String| EndpointError::Certificate {
        path: path.clone(),
        reason,
    };
    let chain = tokio::fs::read(cert_path)
        .await
        .map_err(|e| bad(cert_path, e.to_string()))?;
    let chain =
        signet_core::pem::decode_certs(&chain).map_err(|e| bad(cert_path, e.to_string()))?;
    let key = zeroize::Zeroizing::new(
        tokio::fs::read(key_path)
            .await
            .map_err(|e| bad(key_path, e.to_string()))?,
    );
    let key = zeroize::Zeroizing::new(
        signet_core::pem::decode_private_key(&key).map_err(|e| bad(key_path, e.to_string()))?,
    );
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        key.to_vec(),
    ));
    let signer = signet_core::crypto::tls_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(key_path, e.to_string()))?;
    let chain = chain
        .into_iter()
        .map(rustls::pki_types::CertificateDer::from)
        .collect();
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| bad(key_path, format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

impl WebCert {
    async fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<Self, EndpointError> {
        let key = load_key(&cert_path, &key_path).await?;
        let stamps = (modified(&cert_path).await, modified(&key_path).await);
        Ok(Self {
            current: RwLock::new((stamps.0, stamps.1, Arc::new(key))),
            cert_path,
            key_path,
        })
    }

    async fn reload_when_changed(self: Arc<Self>) {
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            let stamps = (
                modified(&self.cert_path).await,
                modified(&self.key_path).await,
            );
            let seen = {
                let c = self.current.read().unwrap_or_else(|e| e.into_inner());
                (c.0, c.1)
            };
            if stamps == seen {
                continue;
            }
            let loaded = load_key(&self.cert_path, &self.key_path).await;
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            // Either way these files were seen: warn once per change.
            (current.0, current.1) = stamps;
            match loaded {
                Ok(key) => {
                    current.2 = Arc::new(key);
                    tracing::info!(cert = %self.cert_path.display(), "bundle endpoint certificate reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the bundle endpoint certificate files changed but do not load; serving the previous one")
                }
            }
        }
    }
}

impl ResolvesServerCert for WebCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .2
                .clone(),
        )
    }
}
