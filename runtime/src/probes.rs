//! `/live`, `/ready` and `/metrics` over plain HTTP on a daemon's telemetry
//! address, for supervisors and Prometheus. Live: the process answers.
//! Ready and the metrics text: whatever the daemon says through [`Probes`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

/// The media type of the OpenMetrics text exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a daemon answers on the probes.
pub trait Probes: Send + Sync + 'static {
    /// `Ok` when the daemon can do its job, else why not (the 503 body).
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// The metrics in the OpenMetrics text format.
    fn metrics(&self) -> String;
}

/// The bound telemetry listener; bind before serving so a daemon fails at
/// start when its configured address is taken (a health endpoint that is not
/// there would mislead the supervisor).
pub struct Endpoint {
    listener: TcpListener,
    local: SocketAddr,
}

impl Endpoint {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        // Port 0 asks the system for a free one: this is the one it gave.
        let local = listener.local_addr()?;
        Ok(Self { listener, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `stop` completes, then lets requests in progress end.
    /// An error is logged: the daemon goes on without its probes.
    pub async fn serve<P: Probes>(
        self,
        probes: Arc<P>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) {
        let served = axum::serve(self.listener, router(probes))
            .with_graceful_shutdown(stop)
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "telemetry endpoint stopped");
        }
    }
}

pub fn router<P: Probes>(probes: Arc<P>) -> Router {
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready::<P>))
        .route("/metrics", get(metrics::<P>))
        .with_state(probes)
}

async fn ready<P: Probes>(State(probes): State<Arc<P>>) -> impl IntoResponse {
    match probes.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics<P: Probes>(State(probes): State<Arc<P>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS)], probes.metrics())
}

#[cfg(test)]
mod tests;
