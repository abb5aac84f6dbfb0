//! The signals that stop a daemon.

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Completes on SIGTERM (what systemd sends on stop) or SIGINT (Ctrl-C).
/// The handlers are installed when this is called, not when first polled,
/// so a signal sent in between is not lost. Call it on a runtime.
pub fn shutdown() -> impl Future<Output = ()> {
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let name = match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                }
            }
            // Not expected on Unix; Ctrl-C still stops it and SIGTERM keeps
            // its default action.
            (term, int) => {
                let error = term.err().or(int.err()).map(|e| e.to_string());
                tracing::warn!(
                    error,
                    "cannot watch SIGTERM and SIGINT; watching Ctrl-C only"
                );
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        };
        tracing::info!(signal = name, "shutting down");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nix::sys::signal::{raise, Signal};

    #[tokio::test]
    async fn sigterm_or_sigint_completes_it() {
        for sig in [Signal::SIGTERM, Signal::SIGINT] {
            let stop = super::shutdown();
            raise(sig).unwrap();
            tokio::time::timeout(Duration::from_secs(5), stop)
                .await
                .unwrap_or_else(|_| panic!("{sig} did not stop it"));
        }
    }
}
