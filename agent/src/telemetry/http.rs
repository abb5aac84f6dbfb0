//! `/live`, `/ready` and `/metrics` over plain HTTP on the telemetry
//! address. Ready means the agent holds a valid agent SVID, has reached the
//! server at least once and has not been cut off (banned or evicted).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use signet_core::Clock;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Metrics;
use crate::attest::AgentSvid;
use crate::health::Health;

/// What `/ready` looks at.
#[derive(Clone)]
pub struct Readiness {
    health: Health,
    clock: Arc<dyn Clock>,
    agent_svid: Arc<OnceLock<watch::Receiver<Arc<AgentSvid>>>>,
}

impl Readiness {
    pub fn new(health: Health, clock: Arc<dyn Clock>) -> Self {
        Self {
            health,
            clock,
            agent_svid: Arc::default(),
        }
    }

    /// Called once the agent has an identity.
    pub fn set_agent_svid(&self, svid: watch::Receiver<Arc<AgentSvid>>) {
        let _ = self.agent_svid.set(svid);
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), String> {
        let valid = self
            .agent_svid
            .get()
            .is_some_and(|rx| rx.borrow().not_after > self.clock.now());
        if !valid {
            return Err("no valid agent SVID".into());
        }
        if !self.health.reached_server() {
            return Err("the server has not been reached yet".into());
        }
        let report = self.health.report();
        if report.is_cut_off() {
            return Err(report.message);
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

pub fn router(metrics: Arc<Metrics>, readiness: Readiness) -> Router {
    Router::new()
        .route("/live", get(|| async { (StatusCode::OK, "live\n") }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, readiness })
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Binds the telemetry address (errors here stop the agent: a configured
/// health endpoint that is not there would mislead the supervisor).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, readiness: Readiness) {
    if let Err(e) = axum::serve(listener, router(metrics, readiness)).await {
        tracing::error!(error = %e, "telemetry endpoint stopped");
    }
}

#[cfg(test)]
mod tests;
