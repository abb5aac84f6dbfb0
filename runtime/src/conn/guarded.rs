//! An accepted connection as the server reads it: bytes pass through
//! untouched, its permit counts it, and once it has been idle past its
//! deadline (see [`Activity::deadline`]) its next read fails, which ends the
//! connection. The deadline is checked only when the peer has nothing to
//! read, so a request that is arriving is never cut off.

use std::future::Future;
use std::hash::Hash;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use super::{Activity, Permit, Timeouts};

/// What a request learns of its connection: the inner stream's connect
/// info, and the connection's activity (for [`super::ActivityLayer`]).
#[derive(Debug, Clone)]
pub struct ConnInfo<I> {
    pub peer: I,
    pub activity: Arc<Activity>,
}

pub struct Guarded<S, K: Hash + Eq> {
    inner: S,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    deadline: Pin<Box<Sleep>>,
    _permit: Permit<K>,
}

impl<S, K: Hash + Eq> Guarded<S, K> {
    pub fn new(inner: S, permit: Permit<K>, timeouts: Timeouts) -> Self {
        let activity = Activity::new();
        let first = Instant::now() + timeouts.first_request;
        Self {
            inner,
            activity,
            timeouts,
            deadline: Box::pin(tokio::time::sleep_until(first)),
            _permit: permit,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Re-arms the timer; an error when the connection's time is up.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> Result<(), io::Error> {
        while self.deadline.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            match self.activity.deadline(self.timeouts) {
                Some(at) if at <= now => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        if self.activity.requests() == 0 {
                            "no request within the first-request timeout"
                        } else {
                            "no request open for the idle timeout"
                        },
                    ))
                }
                Some(at) => self.deadline.as_mut().reset(at),
                // A request is open: look again an idle period from now.
                None => self.deadline.as_mut().reset(now + self.timeouts.idle),
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin, K: Hash + Eq + Unpin> AsyncRead for Guarded<S, K> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {}
            ready => return ready,
        }
        match this.check_deadline(cx) {
            Ok(()) => Poll::Pending,
            Err(e) => {
                tracing::debug!(error = %e, "closing an idle connection");
                Poll::Ready(Err(e))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin, K: Hash + Eq + Unpin> AsyncWrite for Guarded<S, K> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S, K> Connected for Guarded<S, K>
where
    S: Connected,
    K: Hash + Eq,
{
    type ConnectInfo = ConnInfo<S::ConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnInfo {
            peer: self.inner.connect_info(),
            activity: self.activity.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    use super::super::ConnectionTracker;
    use super::*;

    const T: Timeouts = Timeouts {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    fn guarded(server: UnixStream) -> (Guarded<UnixStream, u32>, ConnectionTracker<u32>) {
        let tracker = ConnectionTracker::new(4, 4);
        let permit = tracker.admit(7).unwrap();
        (Guarded::new(server, permit, T), tracker)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_closes_after_the_first_request_timeout() {
        let (_client, server) = UnixStream::pair().unwrap();
        let (mut g, tracker) = guarded(server);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = g.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), T.first_request);
        assert_eq!(tracker.open_for(&7), 1);
        drop(g);
        assert_eq!(tracker.open_for(&7), 0, "the permit goes with the stream");
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_request_keeps_the_connection_and_idle_counts_from_its_end() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let (mut g, _tracker) = guarded(server);
        let activity = g.activity.clone();
        client.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        g.read_exact(&mut buf).await.unwrap();
        let request = activity.begin();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let err = g.read(&mut buf).await.unwrap_err();
            (err.kind(), Instant::now())
        });
        // Far past both timeouts while the request is open.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!reader.is_finished());
        let ended = Instant::now();
        drop(request);
        let (kind, closed_at) = reader.await.unwrap();
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(closed_at >= ended + T.idle, "{:?}", closed_at - ended);
        assert!(
            closed_at <= ended + T.idle + T.idle,
            "{:?}",
            closed_at - ended
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_that_are_no_request_do_not_keep_a_connection_open() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let (mut g, _tracker) = guarded(server);
        let started = Instant::now();
        tokio::time::advance(Duration::from_secs(5)).await;
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        g.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        let err = g.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), T.first_request);
    }
}
