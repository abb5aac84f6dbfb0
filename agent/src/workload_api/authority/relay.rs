//! One task per accepted connection copies bytes between the client's Unix
//! stream and an in-memory pipe that tonic serves, rewriting the client's
//! header blocks on the way in (see `frames`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

use super::frames::Rewriter;

const PIPE_CAPACITY: usize = 64 * 1024;

/// What tonic serves: the relayed bytes, with the client socket's peer
/// credentials as its connect info.
pub struct RelayedStream {
    io: DuplexStream,
    info: UdsConnectInfo,
}

/// Starts relaying `client` and returns the end tonic should serve.
pub fn relay(client: UnixStream) -> RelayedStream {
    let info = client.connect_info();
    let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
    tokio::spawn(run(client, theirs));
    RelayedStream { io: ours, info }
}

async fn run(client: UnixStream, server: DuplexStream) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = tokio::io::split(server);
    let inbound = async {
        let mut rewriter = Rewriter::default();
        let mut buf = vec![0u8; 16 * 1024];
        let mut out = Vec::with_capacity(buf.len());
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            out.clear();
            if let Err(e) = rewriter.push(buf.get(..n).unwrap_or_default(), &mut out) {
                tracing::debug!(error = %e, "closing Workload API connection");
                break;
            }
            if server_tx.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = server_tx.shutdown().await;
    };
    let outbound = async {
        let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
        let _ = client_tx.shutdown().await;
    };
    tokio::join!(inbound, outbound);
}

impl Connected for RelayedStream {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for RelayedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for RelayedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
