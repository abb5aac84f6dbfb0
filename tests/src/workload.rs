//! A raw Workload API client over the agent's Unix socket, for checks the
//! `spiffe` crate hides (the security header, exact status codes).

use std::path::Path;

use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tonic::transport::{Channel, Endpoint};

pub async fn raw_client(socket: &Path) -> SpiffeWorkloadApiClient<Channel> {
    let path = socket.to_path_buf();
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .expect("connect to the Workload API socket");
    SpiffeWorkloadApiClient::new(channel)
}

/// Wraps `msg` in a request carrying `workload.spiffe.io: true`.
pub fn with_header<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        signet_proto::WORKLOAD_SECURITY_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    req
}
