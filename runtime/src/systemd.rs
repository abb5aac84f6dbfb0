//! `Type=notify` for both daemons: `READY=1` once a daemon can do its job,
//! `STATUS=` lines `systemctl status` shows (why it is not ready, or what
//! went wrong), `STOPPING=1` on the way out. Without `NOTIFY_SOCKET` (not
//! under systemd) all of it does nothing.

use sd_notify::NotifyState;

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
}

pub fn status(status: &str) {
    notify(&[NotifyState::Status(&one_line(status))]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(state: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// A newline would end the `STATUS=` assignment and start another.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r']).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_status_is_one_line() {
        assert_eq!(super::one_line("a\nREADY=1\r\nb"), "a READY=1  b");
    }
}
