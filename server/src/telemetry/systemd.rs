//! `Type=notify` readiness: `READY=1` once serving, `STOPPING=1` on the way
//! out. Without `NOTIFY_SOCKET` (not under systemd) both do nothing.

use sd_notify::NotifyState;

pub fn ready() {
    notify(&[NotifyState::Ready], "READY=1");
}

pub fn stopping() {
    notify(&[NotifyState::Stopping], "STOPPING=1");
}

fn notify(state: &[NotifyState<'_>], what: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "sd_notify {what} failed");
    }
}
