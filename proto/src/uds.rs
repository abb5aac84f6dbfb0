//! A gRPC channel over a Unix socket (the agent's Workload API socket, the
//! server's admin socket), and the Workload API's security header: one
//! place for the CLIs, the authz client library, the tests and the bench.

use std::path::Path;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};

/// A channel to the gRPC server on `socket`; every reconnect dials it again.
pub async fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = socket.to_path_buf();
    // The authority is never resolved: the connector dials the socket.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

/// `message` in a request carrying `workload.spiffe.io: true`.
pub fn workload_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        super::WORKLOAD_SECURITY_HEADER,
        MetadataValue::from_static(super::WORKLOAD_SECURITY_HEADER_VALUE),
    );
    request
}
