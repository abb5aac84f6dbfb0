//! Which requests of a connection are open. A request is open from the
//! moment its headers reach the service until its response body is dropped
//! (sent whole, or reset), so a server stream counts for as long as it
//! lasts. The connection's [`Guarded`](super::Guarded) stream reads this to
//! decide when it has been idle for too long.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::{Layer, Service};

use super::{ConnInfo, Timeouts};

/// One connection's requests.
#[derive(Debug)]
pub struct Activity {
    accepted: Instant,
    open: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds after `accepted` at which the last request ended.
    last_end_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            accepted: Instant::now(),
            open: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
        })
    }

    /// Marks a request open until the guard drops.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// Requests open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// When the connection becomes idle for good: `None` while a request is
    /// open (nothing to wait for).
    pub fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        if self.open() > 0 {
            return None;
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            return Some(self.accepted + timeouts.first_request);
        }
        let ended = std::time::Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        Some(self.accepted + ended + timeouts.idle)
    }
}

/// An open request; it ends when this drops.
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Stamped before the count drops, so an idle connection never looks
        // idle since its first request.
        a.last_end_ms.fetch_max(ms, Ordering::AcqRel);
        a.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks every request of a connection whose connect info is `ConnInfo<I>`
/// open until its response body is dropped.
pub struct ActivityLayer<I>(PhantomData<fn() -> I>);

impl<I> ActivityLayer<I> {
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<I> Default for ActivityLayer<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I> Clone for ActivityLayer<I> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<S, I> Layer<S> for ActivityLayer<I> {
    type Service = ActivityService<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        ActivityService {
            inner,
            _info: PhantomData,
        }
    }
}

pub struct ActivityService<S, I> {
    inner: S,
    _info: PhantomData<fn() -> I>,
}

impl<S: Clone, I> Clone for ActivityService<S, I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _info: PhantomData,
        }
    }
}

impl<S, I, B, RB> Service<http::Request<B>> for ActivityService<S, I>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    I: Send + Sync + 'static,
{
    type Response = http::Response<GuardedBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let guard = req
            .extensions()
            .get::<ConnInfo<I>>()
            .map(|info| info.activity.begin());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|body| GuardedBody {
                inner: body,
                _guard: guard,
            }))
        })
    }
}

/// A response body that keeps its request open while it lives.
pub struct GuardedBody<B> {
    inner: B,
    _guard: Option<RequestGuard>,
}

impl<B: http_body::Body + Unpin> http_body::Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T: Timeouts = Timeouts {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(300),
    };

    #[tokio::test(start_paused = true)]
    async fn deadline_is_first_request_then_idle_after_the_last_end() {
        let a = Activity::new();
        let start = Instant::now();
        assert_eq!(a.deadline(T), Some(start + T.first_request));
        tokio::time::advance(Duration::from_secs(3)).await;
        let g1 = a.begin();
        let g2 = a.begin();
        assert_eq!(a.deadline(T), None);
        tokio::time::advance(Duration::from_secs(4)).await;
        drop(g1);
        assert_eq!(a.deadline(T), None, "one request still open");
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(g2);
        assert_eq!(
            a.deadline(T),
            Some(start + Duration::from_secs(12) + T.idle)
        );
    }
}
