//! A tower layer timing every gRPC call by service and method (from the
//! request path `/package.Service/Method`), until its response (for a
//! stream: its headers) is ready. Each daemon says where the time goes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

/// Where call durations are recorded.
pub trait ObserveRpc: Send + Sync + 'static {
    fn rpc(&self, service: &str, method: &str, took: Duration);
}

pub struct RpcTimingLayer<O: ?Sized>(pub Arc<O>);

impl<O: ?Sized> Clone for RpcTimingLayer<O> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S, O: ObserveRpc + ?Sized> Layer<S> for RpcTimingLayer<O> {
    type Service = RpcTiming<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTiming {
            inner,
            observer: self.0.clone(),
        }
    }
}

pub struct RpcTiming<S, O: ?Sized> {
    inner: S,
    observer: Arc<O>,
}

impl<S: Clone, O: ?Sized> Clone for RpcTiming<S, O> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            observer: self.observer.clone(),
        }
    }
}

fn split_path(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_owned();
    let method = parts.next().unwrap_or_default().to_owned();
    (service, method)
}

impl<S, B, O> Service<http::Request<B>> for RpcTiming<S, O>
where
    S: Service<http::Request<B>> + Send,
    S::Future: Send + 'static,
    O: ObserveRpc + ?Sized,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (service, method) = split_path(req.uri().path());
        let observer = self.observer.clone();
        // tokio's clock, so paused-time tests stay consistent.
        let started = tokio::time::Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            observer.rpc(&service, &method, started.elapsed());
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/signet.node.Node/Attest"),
            ("signet.node.Node".into(), "Attest".into())
        );
        assert_eq!(split_path("/"), (String::new(), String::new()));
    }
}
