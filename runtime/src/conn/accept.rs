//! Accepting connections without spinning: an accept that fails because
//! the process or the system is out of descriptors or memory (`EMFILE`,
//! `ENFILE`, `ENOBUFS`, `ENOMEM`) fails again at once until something
//! closes, so the loop pauses, doubling up to a second, and says so in a
//! throttled log line. Other errors concern one connection and are skipped.

use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;

use crate::throttle::LogThrottle;

const PAUSE_MIN: Duration = Duration::from_millis(5);
const PAUSE_MAX: Duration = Duration::from_secs(1);

/// A listening socket.
pub trait Listener: Send + Sync + 'static {
    type Io: Send + 'static;
    type Addr: Send + 'static;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, Self::Addr)>>;
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, Self::Addr)>> {
        tokio::net::UnixListener::poll_accept(self, cx)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, Self::Addr)>> {
        tokio::net::TcpListener::poll_accept(self, cx)
    }
}

fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    )
}

/// errno values, from nix so this crate needs no libc of its own.
mod libc_errno {
    use nix::errno::Errno;
    pub const EMFILE: i32 = Errno::EMFILE as i32;
    pub const ENFILE: i32 = Errno::ENFILE as i32;
    pub const ENOBUFS: i32 = Errno::ENOBUFS as i32;
    pub const ENOMEM: i32 = Errno::ENOMEM as i32;
}

/// Every connection `listener` accepts, forever; `what` names the listener
/// in log lines.
pub fn accepted<L: Listener>(
    listener: L,
    what: &'static str,
) -> impl Stream<Item = (L::Io, L::Addr)> + Send {
    let state = (listener, LogThrottle::default(), PAUSE_MIN);
    futures::stream::unfold(state, move |(listener, log, mut pause)| async move {
        loop {
            match futures::future::poll_fn(|cx| listener.poll_accept(cx)).await {
                Ok(conn) => return Some((conn, (listener, log, PAUSE_MIN))),
                Err(e) if out_of_resources(&e) => {
                    if let Some(left_out) = log.permit() {
                        tracing::warn!(
                            listener = what,
                            error = %e,
                            pause_ms = pause.as_millis() as u64,
                            similar_left_out = left_out,
                            "cannot accept connections: out of descriptors or memory; pausing accepts"
                        );
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(PAUSE_MAX);
                }
                Err(e) => tracing::debug!(listener = what, error = %e, "accept failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn connections_come_out_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let mut incoming = Box::pin(accepted(listener, "test"));
        let _a = tokio::net::UnixStream::connect(&path).await.unwrap();
        let _b = tokio::net::UnixStream::connect(&path).await.unwrap();
        assert!(incoming.next().await.is_some());
        assert!(incoming.next().await.is_some());
    }

    #[test]
    fn descriptor_exhaustion_is_told_apart() {
        assert!(out_of_resources(&io::Error::from_raw_os_error(
            libc_errno::EMFILE
        )));
        assert!(!out_of_resources(&io::Error::from_raw_os_error(
            nix::errno::Errno::ECONNABORTED as i32
        )));
    }
}
