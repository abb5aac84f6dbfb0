//! Why this crate exists, checked against the h2 the workspace builds: a
//! request whose `:authority` is a percent-encoded Unix socket path (what
//! grpcio sends) is reset by h2, and goes through once rewritten. The day
//! the first half fails, h2 accepts such an `:authority` and this crate can
//! be deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use h2_authority_rewrite::RewritingStream;
use tokio::io::{duplex, AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};

/// One HPACK literal field without indexing, no Huffman (names and values
/// here are under 127 bytes).
fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0);
    out.push(name.len() as u8);
    out.extend(name.as_bytes());
    out.push(value.len() as u8);
    out.extend(value.as_bytes());
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// A complete gRPC request's headers on `stream`, with `authority`.
fn request(stream: u32, authority: &str) -> Vec<u8> {
    let mut block = Vec::new();
    field(&mut block, ":method", "POST");
    field(&mut block, ":scheme", "http");
    field(&mut block, ":path", "/SpiffeWorkloadAPI/FetchX509SVID");
    field(&mut block, ":authority", authority);
    field(&mut block, "content-type", "application/grpc");
    field(&mut block, "te", "trailers");
    // END_HEADERS | END_STREAM
    frame(0x1, 0x4 | 0x1, stream, &block)
}

/// What grpcio sends on a connection to `unix:/tmp/agent.sock`: a request
/// with the encoded path, then (so the test need not wait for a timeout) a
/// second one with a plain authority.
async fn grpcio_client(mut io: DuplexStream) -> DuplexStream {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    bytes.extend(request(1, "%2Ftmp%2Fagent.sock"));
    bytes.extend(request(3, "localhost"));
    io.write_all(&bytes).await.unwrap();
    io
}

/// The stream id and authority of the first request h2 hands the server.
async fn first_request<T: AsyncRead + AsyncWrite + Unpin>(io: T) -> (u32, String) {
    let mut conn = h2::server::handshake(io).await.unwrap();
    let accepted = tokio::time::timeout(Duration::from_secs(10), conn.accept())
        .await
        .expect("h2 handed over no request");
    let (req, respond) = accepted.expect("connection closed").expect("h2 error");
    let authority = req
        .uri()
        .authority()
        .map(ToString::to_string)
        .unwrap_or_default();
    (u32::from(respond.stream_id()), authority)
}

#[tokio::test]
async fn h2_still_resets_a_percent_encoded_authority() {
    let (client, server) = duplex(1 << 16);
    let _client = grpcio_client(client).await;
    let (stream, authority) = first_request(server).await;
    assert_eq!(
        (stream, authority.as_str()),
        (3, "localhost"),
        "h2 now accepts a percent-encoded :authority (stream 1 got through): \
         delete h2-authority-rewrite and serve the socket directly"
    );
}

#[tokio::test]
async fn rewritten_the_same_request_gets_through_as_localhost() {
    let (client, server) = duplex(1 << 16);
    let _client = grpcio_client(client).await;
    let (stream, authority) = first_request(RewritingStream::new(server)).await;
    assert_eq!((stream, authority.as_str()), (1, "localhost"));
}
