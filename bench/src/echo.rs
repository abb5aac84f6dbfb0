//! The floor for Workload API latency: a bare tonic unary echo over a Unix
//! socket, hand-wired (a prost message, a tower service, `tonic::server::Grpc`)
//! so the bench needs no protoc.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::path::Path;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{http, BoxFuture};
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

const PATH: &str = "/signet.bench.Echo/Echo";

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
}

#[derive(Clone, Default)]
pub struct EchoServer;

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = "signet.bench.Echo";
}

struct Unary;

impl tonic::server::UnaryService<EchoMessage> for Unary {
    type Response = EchoMessage;
    type Future = Ready<Result<tonic::Response<EchoMessage>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<EchoMessage>) -> Self::Future {
        ready(Ok(tonic::Response::new(request.into_inner())))
    }
}

impl tower::Service<http::Request<Body>> for EchoServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() != PATH {
                return Ok(tonic::Status::unimplemented("no such method").into_http());
            }
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<EchoMessage, EchoMessage>::default());
            Ok(grpc.unary(Unary, req).await)
        })
    }
}

/// Serves the echo on `socket` until the runtime ends.
pub fn serve(socket: &Path) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::UnixListener::bind(socket)?;
    Ok(tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(EchoServer)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
    }))
}

/// One echo call on `channel`.
pub async fn call(channel: Channel, payload: Vec<u8>) -> anyhow::Result<EchoMessage> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let response = grpc
        .unary(
            tonic::Request::new(EchoMessage { payload }),
            http::uri::PathAndQuery::from_static(PATH),
            ProstCodec::<EchoMessage, EchoMessage>::default(),
        )
        .await?;
    Ok(response.into_inner())
}
