//! `/live`, `/ready` and `/metrics` over plain HTTP on the telemetry address.
//! Live: the process answers. Ready: the datastore answers and the CA can
//! sign (an active, unexpired X.509 authority). Metrics: Prometheus text.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::api::ServerState;

#[derive(Clone)]
struct Telemetry {
    state: ServerState,
}

/// Binds `addr`; the returned future serves until `stop` completes.
pub async fn bind(
    addr: SocketAddr,
    state: ServerState,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let mut stop = state.shutdown.clone();
    let app = Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(Telemetry { state }));
    let serve = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    };
    Ok((local, serve))
}

async fn live() -> &'static str {
    "live\n"
}

/// Why the server is not ready, or `None`.
pub async fn not_ready(state: &ServerState) -> Option<String> {
    if let Err(e) = state.ds.current_revision().await {
        return Some(format!("datastore: {e}"));
    }
    if state.ca.now() >= state.ca.not_after() {
        return Some("CA: no active X.509 authority can sign (expired)".into());
    }
    None
}

async fn ready(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    match not_ready(&t.state).await {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        t.state.metrics.encode(),
    )
}
