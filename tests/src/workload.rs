//! A raw Workload API client over the agent's Unix socket, for checks the
//! `spiffe` crate hides (the security header, exact status codes).

use std::path::Path;

use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tonic::transport::{Channel, Endpoint};

pub async fn raw_client(socket: &Path) -> SpiffeWorkloadApiClient<Channel> {
    let channel = signet_proto::uds::channel(socket)
        .await
        .expect("connect to the Workload API socket");
    SpiffeWorkloadApiClient::new(channel)
}

/// Wraps `msg` in a request carrying `workload.spiffe.io: true`.
pub fn with_header<T>(msg: T) -> tonic::Request<T> {
    signet_proto::uds::workload_request(msg)
}

/// A client on `stream` alone (a reconnect fails): for tests that must
/// know which connection their calls travel on.
pub async fn client_over(stream: tokio::net::UnixStream) -> SpiffeWorkloadApiClient<Channel> {
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(stream)));
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            async move {
                taken
                    .map(hyper_util::rt::TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("the connection is gone"))
            }
        }))
        .await
        .expect("HTTP/2 over the socket");
    SpiffeWorkloadApiClient::new(channel)
}

/// Tells when the agent has closed a connection a client is using,
/// without reading from it (a duplicate of the socket, polled for RDHUP).
pub struct CloseWatch(std::os::fd::OwnedFd);

impl CloseWatch {
    pub fn around(stream: tokio::net::UnixStream) -> (CloseWatch, tokio::net::UnixStream) {
        let std_stream = stream.into_std().expect("std stream");
        let dup = std_stream.try_clone().expect("dup");
        let stream = tokio::net::UnixStream::from_std(std_stream).expect("tokio stream");
        (CloseWatch(std::os::fd::OwnedFd::from(dup)), stream)
    }

    /// Resolves once the other end is shut.
    pub async fn closed(&mut self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        loop {
            let rdhup = PollFlags::from_bits_retain(libc::POLLRDHUP);
            let mut fds = [PollFd::new(self.0.as_fd(), rdhup)];
            let hung_up = matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0);
            if hung_up {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
