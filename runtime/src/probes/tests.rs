//! Scrapes the endpoints with a minimal HTTP/1.1 client over TCP, as a
//! supervisor or Prometheus would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::*;

struct Fake {
    ready: AtomicBool,
}

impl Probes for Fake {
    async fn ready(&self) -> Result<(), String> {
        if self.ready.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("the datastore does not answer".into())
        }
    }

    fn metrics(&self) -> String {
        "# TYPE up gauge\nup 1\n# EOF\n".into()
    }
}

/// Status, `Content-Type` and body of `GET path`.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    (status, content_type, body.to_owned())
}

#[tokio::test]
async fn live_ready_and_metrics_answer_and_stop_ends_the_server() {
    let probes = Arc::new(Fake {
        ready: AtomicBool::new(false),
    });
    let endpoint = Endpoint::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = endpoint.local_addr();
    assert_ne!(addr.port(), 0);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let served = tokio::spawn(endpoint.serve(probes.clone(), async move {
        let _ = stop_rx.await;
    }));

    assert_eq!(get(addr, "/live").await.0, 200);
    let (status, _, body) = get(addr, "/ready").await;
    assert_eq!(status, 503);
    assert_eq!(body, "not ready: the datastore does not answer\n");
    probes.ready.store(true, Ordering::SeqCst);
    assert_eq!(
        get(addr, "/ready").await,
        (200, "text/plain; charset=utf-8".into(), "ready\n".into())
    );
    let (status, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, OPENMETRICS);
    assert_eq!(body, "# TYPE up gauge\nup 1\n# EOF\n");
    assert_eq!(get(addr, "/nothing").await.0, 404);

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_taken_address_fails_at_bind() {
    let taken = Endpoint::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert!(Endpoint::bind(taken.local_addr()).await.is_err());
}
