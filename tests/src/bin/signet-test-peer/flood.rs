//! Many connections held open: to a Unix socket (the Workload API), or over
//! TCP from a chosen source address (the Node API), each watched so the
//! test learns how many the server took, refused, and later closed.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::report;

#[derive(Default)]
struct Counts {
    attempted: AtomicUsize,
    /// Connected and not closed by the server (yet).
    open: AtomicUsize,
    /// Closed by the server after it had taken them.
    closed_by_server: AtomicUsize,
    /// Could not connect, or closed before the first byte of service.
    refused: AtomicUsize,
}

impl Counts {
    fn json(&self, done: bool) -> serde_json::Value {
        json!({
            "attempted": self.attempted.load(Ordering::SeqCst),
            "open": self.open.load(Ordering::SeqCst),
            "closed_by_server": self.closed_by_server.load(Ordering::SeqCst),
            "refused": self.refused.load(Ordering::SeqCst),
            "done": done,
        })
    }
}

fn raise_nofile() {
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Writes the counts every 100 ms, forever (the test kills us).
async fn report_forever(counts: Arc<Counts>, status: &Path, done: Arc<AtomicUsize>, total: usize) {
    loop {
        let finished = done.load(Ordering::SeqCst) >= total;
        report::write(status, &counts.json(finished));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How a closed connection is told refused from served-then-closed.
#[derive(Clone, Copy)]
enum Refused {
    /// The agent's GOAWAY at accept says why, naming the connection cap.
    Goaway,
    /// A TCP listener closes a refused connection at once.
    Within(Duration),
}

/// Reads until the server closes, then counts the connection as refused
/// or as closed by the server later.
async fn watch<S: AsyncRead + Unpin>(mut s: S, counts: Arc<Counts>, how: Refused) {
    let started = tokio::time::Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) if seen.len() < 4096 => seen.extend_from_slice(&buf[..n]),
            Ok(_) => {}
        }
    }
    let refused = match how {
        Refused::Goaway => {
            let marker = b"connections";
            seen.windows(marker.len()).any(|w| w == marker)
        }
        Refused::Within(window) => started.elapsed() < window,
    };
    counts.open.fetch_sub(1, Ordering::SeqCst);
    if refused {
        counts.refused.fetch_add(1, Ordering::SeqCst);
    } else {
        counts.closed_by_server.fetch_add(1, Ordering::SeqCst);
    }
}

fn preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    out
}

/// The most a connection that asked for nothing may make the agent hold:
/// the preface, then a HEADERS frame announced at the largest header block
/// the agent takes (8 KiB and padding: 8,453 bytes), sent but for 53.
fn partial_header_block() -> Vec<u8> {
    let mut out = preface();
    out.extend_from_slice(&[0, 0x21, 0x05, 1, 0, 0, 0, 0, 1]);
    out.extend(std::iter::repeat_n(0x82, 8_400));
    out
}

/// The worst a connection may hold: the preface, a whole request header
/// block (so DATA is allowed), then a DATA frame announced at the largest
/// size the agent takes (16 KiB) and sent but for 384 bytes.
fn partial_request() -> Vec<u8> {
    let mut out = preface();
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/SpiffeWorkloadAPI/ValidateJWTSVID"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("workload.spiffe.io", "true"),
    ] {
        // Literal without indexing, new name; lengths below 127.
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let len = block.len();
    out.extend_from_slice(&[
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        1,
        0x4,
        0,
        0,
        0,
        1,
    ]);
    out.extend_from_slice(&block);
    out.extend_from_slice(&[0, 0x40, 0, 0, 0, 0, 0, 0, 1]);
    out.extend(std::iter::repeat_n(b'x', 16_000));
    out
}

/// What each held connection sends first.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Send {
    Nothing,
    PartialHeaderBlock,
    PartialRequest,
    /// A frame announced at 1 MiB (above the size the agent advertises)
    /// with 16 KB of it: what once made the shim hold 1 MiB a connection.
    OversizedFrame,
}

fn oversized_frame() -> Vec<u8> {
    let mut out = preface();
    out.extend_from_slice(&[0x10, 0, 0, 0, 0, 0, 0, 0, 1]);
    out.extend(std::iter::repeat_n(b'x', 16_000));
    out
}

pub async fn hold(socket: &Path, count: usize, send: Send, status: &Path) {
    raise_nofile();
    let counts = Arc::new(Counts::default());
    let done = Arc::new(AtomicUsize::new(0));
    let first = match send {
        Send::Nothing => Vec::new(),
        Send::PartialHeaderBlock => partial_header_block(),
        Send::PartialRequest => partial_request(),
        Send::OversizedFrame => oversized_frame(),
    };
    let first = Arc::new(first);
    for _ in 0..count {
        counts.attempted.fetch_add(1, Ordering::SeqCst);
        let (counts, done, first) = (counts.clone(), done.clone(), first.clone());
        let socket = socket.to_path_buf();
        match tokio::net::UnixStream::connect(&socket).await {
            Ok(mut s) => {
                counts.open.fetch_add(1, Ordering::SeqCst);
                if !first.is_empty() {
                    let _ = s.write_all(&first).await;
                }
                done.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(watch(s, counts, Refused::Goaway));
            }
            Err(_) => {
                counts.refused.fetch_add(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    report_forever(counts, status, done, count).await;
}

pub async fn tcp_flood(addr: SocketAddr, source: IpAddr, count: usize, tls: bool, status: &Path) {
    raise_nofile();
    let counts = Arc::new(Counts::default());
    let done = Arc::new(AtomicUsize::new(0));
    let config = signet_tests::node::client_config(&[], &[]);
    for n in 1..=count {
        counts.attempted.fetch_add(1, Ordering::SeqCst);
        let (counts, done, config) = (counts.clone(), done.clone(), config.clone());
        tokio::spawn(async move {
            let socket = match source {
                IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
            };
            let connected =
                match socket.and_then(|s| s.bind(SocketAddr::new(source, 0)).map(|()| s)) {
                    Ok(s) => s.connect(addr).await,
                    Err(e) => Err(e),
                };
            let Ok(tcp) = connected else {
                counts.refused.fetch_add(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                return;
            };
            if tls {
                let connector = tokio_rustls::TlsConnector::from(config);
                let name = rustls::pki_types::ServerName::try_from("signet-server").expect("name");
                match tokio::time::timeout(Duration::from_secs(30), connector.connect(name, tcp))
                    .await
                {
                    Ok(Ok(stream)) => {
                        counts.open.fetch_add(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                        watch(stream, counts, Refused::Within(Duration::ZERO)).await;
                    }
                    _ => {
                        counts.refused.fetch_add(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                }
            } else {
                counts.open.fetch_add(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                watch(tcp, counts, Refused::Within(Duration::from_millis(500))).await;
            }
        });
        // Let the tasks connect as we go.
        if n % 200 == 0 {
            tokio::task::yield_now().await;
        }
    }
    report_forever(counts, status, done, count).await;
}
