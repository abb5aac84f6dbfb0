//! The Workload API's connections as tonic serves them: the client's
//! stream through `h2_authority_rewrite` (grpcio's percent-encoded
//! `:authority` would be refused by h2), with the caller, pinned at accept,
//! as its connect info. The socket's peer credentials are taken before any
//! byte is relayed, so workload attestation is unchanged.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use h2_authority_rewrite::RewritingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

use crate::attest::workload::peer::PeerPin;

pub use h2_authority_rewrite::MAX_HEADER_LIST;

/// Who is on the other end: the socket's peer credentials and the process
/// pinned at accept, both taken before any byte was read.
#[derive(Debug, Clone)]
pub struct WorkloadPeer {
    pub uds: UdsConnectInfo,
    pub pin: Arc<PeerPin>,
}

/// What tonic serves: the client's stream with its header blocks rewritten,
/// and the caller as its connect info.
pub struct RelayedStream {
    stream: RewritingStream<UnixStream>,
    info: WorkloadPeer,
}

/// Wraps `client`, whose caller was pinned as `pin` at accept.
pub fn relay(client: UnixStream, pin: Arc<PeerPin>) -> RelayedStream {
    RelayedStream {
        info: WorkloadPeer {
            uds: client.connect_info(),
            pin,
        },
        stream: RewritingStream::new(client),
    }
}

/// Tells a client the agent will not serve this connection (and why); the
/// caller then drops it. Never blocks: a fresh socket takes these bytes.
pub fn refuse(client: &UnixStream, why: &str) {
    if let Err(e) = client.try_write(&h2_authority_rewrite::refusal(why)) {
        tracing::debug!(error = %e, "could not tell a refused client why");
    }
}

impl Connected for RelayedStream {
    type ConnectInfo = WorkloadPeer;

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
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if let Poll::Ready(Err(e)) = &read {
            tracing::debug!(error = %e, "closing Workload API connection");
        }
        read
    }
}

impl AsyncWrite for RelayedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn the_caller_is_known_before_a_byte_is_read_and_bytes_pass_both_ways() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let pin = Arc::new(PeerPin::at_accept(
            &server,
            None,
            std::path::Path::new("/proc"),
        ));
        let mut relayed = relay(server, pin);
        let uid = relayed.connect_info().uds.peer_cred.map(|c| c.uid());
        assert_eq!(uid, Some(nix::unistd::geteuid().as_raw()));
        // The preface and a SETTINGS frame go through as sent.
        let mut sent = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        sent.extend([0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        client.write_all(&sent).await.unwrap();
        let mut got = vec![0u8; sent.len()];
        relayed.read_exact(&mut got).await.unwrap();
        assert_eq!(got, sent);
        relayed.write_all(b"reply").await.unwrap();
        let mut reply = [0u8; 5];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"reply");
    }
}
