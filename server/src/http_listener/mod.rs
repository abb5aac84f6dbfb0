//! The one accept loop of the server's small HTTP/1.1 listeners (the
//! bundle endpoint, the dashboard, the OIDC discovery provider): at most
//! `max_connections` served at once (more wait to be accepted), the TLS
//! handshake and the request headers bounded in time, everything ended by
//! the stop signal. Each request goes to `handler` with what is known of
//! its connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

mod web_cert;
pub use web_cert::{CertError, WebCert};

/// A TLS handshake, or a request's headers, taking longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub type Reply = hyper::Response<Full<Bytes>>;

/// A served connection, as the handler sees it.
pub struct Conn {
    pub peer: SocketAddr,
    /// The client's certificate chain (DER, leaf first); empty without
    /// TLS or without a client certificate.
    pub client_certs: Vec<Vec<u8>>,
}

/// How a listener serves.
pub struct Listener {
    /// For the logs.
    pub what: &'static str,
    pub max_connections: usize,
    /// HTTPS when set, plain HTTP otherwise.
    pub tls: Option<TlsAcceptor>,
}

/// A response with `status`, `body` and `content_type`.
pub fn reply(
    status: http::StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Reply {
    let mut r = hyper::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

impl Listener {
    /// Serves `listener` until `stop` turns true.
    pub async fn serve<H, F>(
        self,
        listener: TcpListener,
        mut stop: watch::Receiver<bool>,
        handler: H,
    ) where
        H: Fn(hyper::Request<Incoming>, Arc<Conn>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Reply> + Send + 'static,
    {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let what = self.what;
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
                    tracing::debug!(what, error = %e, "accept failed");
                    continue;
                }
            };
            let tls = self.tls.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let Some(acceptor) = tls else {
                    let conn = Conn {
                        peer,
                        client_certs: Vec::new(),
                    };
                    return serve_io(what, tcp, conn, handler).await;
                };
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(what, %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let client_certs = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect())
                    .unwrap_or_default();
                serve_io(what, tls, Conn { peer, client_certs }, handler).await;
            });
        }
    }
}

async fn serve_io<I, H, F>(what: &'static str, io: I, conn: Conn, handler: H)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(hyper::Request<Incoming>, Arc<Conn>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let peer = conn.peer;
    let conn = Arc::new(conn);
    let service = hyper::service::service_fn(move |req| {
        let answer = handler(req, conn.clone());
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(what, %peer, error = %e, "connection ended");
    }
}
