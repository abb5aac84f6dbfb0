//! The whole agent (`app::run`) restarted with a data dir from a previous
//! run and no server to reach: it serves the cached SVIDs at once.

use tokio::time::Instant;

use super::*;
use crate::cache::persist;
use crate::config::{FileConfig, RunArgs, RuntimeConfig};
use crate::storage::{Storage, StoredIdentity};

#[tokio::test]
async fn restarted_agent_serves_cached_svids_from_disk_without_the_server() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let socket = dir.path().join("api.sock");

    // What a previous run left: its own identity, the bundle, the cache.
    let storage = Storage::open(&data_dir).unwrap();
    let agent = ca.issue("/signet/agent/join_token/t", Duration::from_secs(600));
    storage
        .save_identity(&StoredIdentity {
            key_pkcs8: agent.key_pkcs8.clone(),
            chain: agent.x509.chain.clone(),
        })
        .unwrap();
    storage.save_bundle(std::slice::from_ref(&ca.cert)).unwrap();
    let svid = ca.issue("/cached", Duration::from_secs(600));
    let cached = snapshot(
        &ca,
        vec![(
            entry("e1", "/cached", &my_uid_selector(), ""),
            Some(svid.clone()),
        )],
    );
    let doc = persist::encode(&cached).unwrap();
    std::fs::write(persist::cache_path(&data_dir), doc).unwrap();

    // Nothing listens on the server address.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server_address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let args = RunArgs {
        data_dir: Some(data_dir),
        socket_path: Some(socket.clone()),
        server_address: Some(server_address),
        ..Default::default()
    };
    let config = RuntimeConfig::merge(FileConfig::default(), &args).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(crate::app::run(config, async {
        let _ = stopped.await;
    }));

    let response = loop {
        if let Ok(mut client) = crate::cli::client::connect(&socket).await {
            if let Ok(stream) = client
                .fetch_x509svid(crate::cli::client::request(X509svidRequest {}))
                .await
            {
                break stream.into_inner().message().await.unwrap().unwrap();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never served");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    eprintln!(
        "served from disk {} ms after start",
        started.elapsed().as_millis()
    );
    assert_eq!(response.svids.len(), 1);
    assert_eq!(response.svids[0].spiffe_id, "spiffe://example.org/cached");
    assert_eq!(response.svids[0].x509_svid, svid.x509.chain.concat());
    assert_eq!(response.svids[0].x509_svid_key, *svid.key_pkcs8);

    // Written by a task of its own: waited for, then read.
    let health_file = crate::health::health_path(&socket);
    let health = loop {
        if let Some(h) = crate::health::read(&health_file).unwrap() {
            break h;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no health file");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        health.problem(),
        None,
        "an unreachable server is no health problem"
    );

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert!(!socket.exists(), "socket removed on the way out");
}
