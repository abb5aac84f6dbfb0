//! The client's stream as the server reads it: bytes the client sends pass
//! through the [`Rewriter`] inside `poll_read`, one frame at a time as the
//! server reads them; what the server writes goes to the client untouched.
//! No task or pipe of its own, so a request costs no extra wake-up or copy,
//! and what a connection holds is one read and one rewritten frame.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::frames::Rewriter;

/// How much is read from the client at once (on the stack, not kept).
const READ_CHUNK: usize = 16 * 1024;
/// A rewritten-frame buffer that grew past this is let go once empty.
const KEEP_CAPACITY: usize = 32 * 1024;

pub struct RewritingStream<S> {
    client: S,
    rewriter: Rewriter,
    /// Rewritten bytes; those from `read_at` on are not yet read.
    rewritten: Vec<u8>,
    read_at: usize,
}

impl<S> RewritingStream<S> {
    pub fn new(client: S) -> Self {
        Self {
            client,
            rewriter: Rewriter::default(),
            rewritten: Vec::new(),
            read_at: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RewritingStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let waiting = this.rewritten.get(this.read_at..).unwrap_or_default();
            if !waiting.is_empty() {
                let n = waiting.len().min(buf.remaining());
                buf.put_slice(waiting.get(..n).unwrap_or_default());
                this.read_at += n;
                return Poll::Ready(Ok(()));
            }
            if this.rewritten.capacity() > KEEP_CAPACITY {
                this.rewritten = Vec::new();
            }
            this.rewritten.clear();
            this.read_at = 0;
            // The next frame, if the client sent a whole one.
            match this.rewriter.next(&mut this.rewritten) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut raw = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.client).poll_read(cx, &mut raw))?;
            if raw.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.rewriter.feed(raw.filled());
            // Nothing may have come out yet (a frame still incomplete): the
            // loop reads again, so the socket's waker is registered before
            // Pending is returned.
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RewritingStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.client).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.client).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.client.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.client).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.client).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn frames_split_across_reads_come_out_whole_and_writes_go_straight_back() {
        let (mut client, server) = duplex(1 << 16);
        let mut relayed = RewritingStream::new(server);
        // The preface, then a SETTINGS frame sent in two pieces.
        let mut sent = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        sent.extend([0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        let (a, b) = sent.split_at(30);
        let (a, b) = (a.to_vec(), b.to_vec());
        client.write_all(&a).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; sent.len()];
            relayed.read_exact(&mut got).await.unwrap();
            assert_eq!(got, sent);
            relayed.write_all(b"reply").await.unwrap();
            relayed
        });
        tokio::task::yield_now().await;
        client.write_all(&b).await.unwrap();
        let _relayed = reader.await.unwrap();
        let mut reply = [0u8; 5];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"reply");
    }

    #[tokio::test]
    async fn a_protocol_violation_is_an_error_for_the_server() {
        let (mut client, server) = duplex(1 << 16);
        let mut relayed = RewritingStream::new(server);
        let mut sent = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // A CONTINUATION with no HEADERS before it.
        sent.extend([0, 0, 1, 0x9, 0x4, 0, 0, 0, 1, b'x']);
        client.write_all(&sent).await.unwrap();
        drop(client);
        let mut got = Vec::new();
        let err = relayed.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
