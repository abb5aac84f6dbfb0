//! Workload API calls over a socket this process connected, or one it was
//! handed; and a header block meant to blow up in whoever decodes it.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_proto::workload::X509svidRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::transport::Channel;

use super::report;

pub use signet_tests::workload::client_over;

/// The SPIFFE IDs of the first FetchX509SVID answer.
pub async fn fetch_once(
    client: &mut SpiffeWorkloadApiClient<Channel>,
) -> Result<Vec<String>, tonic::Status> {
    let request = signet_tests::workload::with_header(X509svidRequest {});
    let mut stream = client.fetch_x509svid(request).await?.into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer within 10 s"))??
        .ok_or_else(|| tonic::Status::unknown("the stream ended without an answer"))?;
    Ok(first.svids.into_iter().map(|s| s.spiffe_id).collect())
}

pub async fn fetch(socket: &Path, out: &Path) {
    let result = match UnixStream::connect(socket).await {
        Ok(stream) => fetch_once(&mut client_over(stream).await).await,
        Err(e) => Err(tonic::Status::unavailable(format!("connect: {e}"))),
    };
    report::write(out, &report::outcome(result));
}

/// `calls` FetchJWTSVID calls in a row: how many ended with each code, and
/// the retry hint of the first rate-limit refusal.
pub async fn call_flood(socket: &Path, calls: usize, out: &Path) {
    let stream = UnixStream::connect(socket).await.expect("connect");
    let mut client = client_over(stream).await;
    let mut codes = std::collections::BTreeMap::<String, u64>::new();
    let mut retry_after_ms = None;
    let started = Instant::now();
    for _ in 0..calls {
        let request = signet_tests::workload::with_header(signet_proto::workload::JwtsvidRequest {
            audience: vec!["flood".into()],
            spiffe_id: String::new(),
        });
        let code = match client.fetch_jwtsvid(request).await {
            Ok(_) => tonic::Code::Ok,
            Err(s) => {
                if retry_after_ms.is_none() {
                    retry_after_ms = signet_runtime::ratelimit::status::retry_after(&s)
                        .map(|d| d.as_millis() as u64);
                }
                s.code()
            }
        };
        *codes.entry(format!("{code:?}")).or_default() += 1;
    }
    report::write(
        out,
        &serde_json::json!({
            "codes": codes,
            "retry_after_ms": retry_after_ms,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }),
    );
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The block: one 4,000-byte header entered into the table (literal with
/// incremental indexing, new name), then 250,000 one-byte references to it
/// (index 62): 254 KB that decode to about a gigabyte.
fn bomb_block() -> Vec<u8> {
    let name = b"x-bomb";
    let value = vec![b'a'; 4000];
    let mut block = vec![0x40, name.len() as u8];
    block.extend_from_slice(name);
    // 4000 = 127 + 3873: a 7-bit prefix integer continued in two bytes.
    block.extend_from_slice(&[0x7f, (3873 % 128 + 128) as u8, (3873 / 128) as u8]);
    block.extend_from_slice(&value);
    block.extend(std::iter::repeat_n(0x80 | 62, 250_000));
    block
}

pub async fn hpack_bomb(socket: &Path, out: &Path) {
    let mut stream = UnixStream::connect(socket).await.expect("connect");
    let block = bomb_block();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    let mut chunks = block.chunks(16_384).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let end = if chunks.peek().is_none() { 0x4 } else { 0 };
        let kind = if first { 0x1 } else { 0x9 };
        bytes.extend(frame(kind, end, 1, chunk));
        first = false;
    }
    let started = Instant::now();
    // The agent may close before it has read it all: that is the answer.
    let sent = stream.write_all(&bytes).await.is_ok();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink))
        .await
        .is_ok();
    report::write(
        out,
        &json!({
            "block_bytes": block.len(),
            "sent_whole": sent,
            "closed_by_agent": closed,
            "closed_after_ms": started.elapsed().as_millis() as u64,
        }),
    );
}
