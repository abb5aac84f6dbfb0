//! Operating the agent: Prometheus metrics, the `/live`, `/ready` and
//! `/metrics` HTTP endpoints, and systemd readiness notification.

pub mod http;
pub mod metrics;
pub mod svids;

pub use http::Readiness;
pub use metrics::Metrics;

/// Tells systemd (`Type=notify`) the agent is ready; nothing without
/// `NOTIFY_SOCKET`.
pub fn notify_ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot notify systemd of readiness");
    }
}

/// Tells systemd the agent is stopping.
pub fn notify_stopping() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Stopping]) {
        tracing::warn!(error = %e, "cannot notify systemd of shutdown");
    }
}
