//! The OIDC discovery provider (`[oidc]`): what a cloud reads to trust
//! JWT-SVIDs as web-identity tokens. `GET <issuer path>/.well-known/openid-configuration`
//! answers the discovery document; `GET <jwks_path>` the JWKS of every
//! current JWT authority of the trust domain (prepared, active, old; every
//! server of a group), read from the published bundle at each request, so
//! a rotated-out key leaves it as soon as it leaves the bundle. Plain HTTP
//! (behind a TLS terminator) or HTTPS with a Web PKI certificate.

mod documents;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::ca::CertificateAuthority;
use crate::config::OidcSettings;
use crate::http_listener::{reply, Listener, Reply, WebCert};

/// Clouds fetch rarely; anything more is someone else.
const MAX_CONNECTIONS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("binding the OIDC discovery provider to {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("OIDC discovery provider: {0}")]
    Certificate(#[from] crate::http_listener::CertError),
    #[error("OIDC discovery provider TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// Serves discovery on `bind` until `stop`; its address and tasks.
pub async fn start(
    settings: OidcSettings,
    bind: SocketAddr,
    ca: Arc<CertificateAuthority>,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, Vec<JoinHandle<()>>), OidcError> {
    let mut tasks = Vec::new();
    let tls = match settings.tls.clone() {
        None => None,
        Some((cert, key)) => {
            let web = Arc::new(WebCert::load("OIDC discovery", cert, key).await?);
            tasks.push(tokio::spawn(web.clone().reload_when_changed()));
            let mut config =
                rustls::ServerConfig::builder_with_provider(signet_core::crypto::tls_provider())
                    .with_safe_default_protocol_versions()?
                    .with_no_client_auth()
                    .with_cert_resolver(web);
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(TlsAcceptor::from(Arc::new(config)))
        }
    };
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|e| OidcError::Bind(bind, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| OidcError::Bind(bind, e))?;
    tracing::info!(%addr, issuer = %settings.issuer, tls = tls.is_some(), "serving OIDC discovery");
    let listening = Listener {
        what: "OIDC discovery",
        max_connections: MAX_CONNECTIONS,
        tls,
    };
    let settings = Arc::new(settings);
    tasks.push(tokio::spawn(listening.serve(
        listener,
        stop,
        move |req, _| {
            let answered = answer(&req, &settings, &ca);
            async move { answered }
        },
    )));
    Ok((addr, tasks))
}

fn answer(
    req: &hyper::Request<Incoming>,
    settings: &OidcSettings,
    ca: &CertificateAuthority,
) -> Reply {
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return reply(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "GET only\n",
            "text/plain",
        );
    }
    let path = req.uri().path();
    let body = if path == settings.discovery_path {
        documents::discovery(settings, &ca.bundle())
    } else if path == settings.jwks_path {
        documents::jwks(&ca.bundle())
    } else {
        return reply(http::StatusCode::NOT_FOUND, "not found\n", "text/plain");
    };
    match body {
        Ok(json) => reply(http::StatusCode::OK, json, "application/json"),
        Err(e) => {
            tracing::warn!(error = %e, "OIDC document not encoded");
            reply(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "the document cannot be encoded\n",
                "text/plain",
            )
        }
    }
}
