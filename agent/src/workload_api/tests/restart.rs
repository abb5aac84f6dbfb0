//! The whole agent (`app::run`) restarted with a data dir from a previous
//! run and no server to reach: it serves what it cached at once.

use signet_proto::workload::{JwtBundlesRequest, ValidateJwtsvidRequest};
use tokio::time::Instant;

use super::federation::{federating, jwks_kids, with_federated, Peer};
use super::*;
use crate::cache::persist;
use crate::config::{FileConfig, RunArgs, RuntimeConfig};
use crate::storage::{Storage, StoredIdentity};

/// A restarted agent and how to stop it.
struct Restarted {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    started: Instant,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the agent on a data dir where a previous run left its own
/// identity, the bundle and `cached`; nothing listens on the server address.
fn restart_with(ca: &TestCa, cached: &Snapshot) -> Restarted {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let socket = dir.path().join("api.sock");
    let storage = Storage::open(&data_dir).unwrap();
    let agent = ca.issue("/signet/agent/join_token/t", Duration::from_secs(600));
    storage
        .save_identity(&StoredIdentity {
            key: crate::storage::StoredKey::Pkcs8(agent.key_pkcs8.clone()),
            chain: agent.x509.chain.clone(),
        })
        .unwrap();
    storage.save_bundle(std::slice::from_ref(&ca.cert)).unwrap();
    let doc = persist::encode(cached).unwrap();
    std::fs::write(persist::cache_path(&data_dir), doc).unwrap();

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
    Restarted {
        _dir: dir,
        socket,
        started,
        stop,
        running,
    }
}

impl Restarted {
    /// The first FetchX509SVID answer, as soon as the socket serves one.
    async fn first_x509(&self) -> X509svidResponse {
        loop {
            if let Ok(mut client) = crate::cli::client::connect(&self.socket).await {
                if let Ok(stream) = client
                    .fetch_x509svid(crate::cli::client::request(X509svidRequest {}))
                    .await
                {
                    return stream.into_inner().message().await.unwrap().unwrap();
                }
            }
            assert!(
                self.started.elapsed() < Duration::from_secs(5),
                "never served"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn client(&self) -> SpiffeWorkloadApiClient<Channel> {
        crate::cli::client::connect(&self.socket).await.unwrap()
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.running.await.unwrap().unwrap();
        assert!(!self.socket.exists(), "socket removed on the way out");
    }
}

#[tokio::test]
async fn restarted_agent_serves_cached_svids_from_disk_without_the_server() {
    let ca = TestCa::new();
    let svid = ca.issue("/cached", Duration::from_secs(600));
    let cached = snapshot(
        &ca,
        vec![(
            entry("e1", "/cached", &my_uid_selector(), ""),
            Some(svid.clone()),
        )],
    );
    let agent = restart_with(&ca, &cached);
    let response = agent.first_x509().await;
    eprintln!(
        "served from disk {} ms after start",
        agent.started.elapsed().as_millis()
    );
    assert_eq!(response.svids.len(), 1);
    assert_eq!(response.svids[0].spiffe_id, "spiffe://example.org/cached");
    assert_eq!(response.svids[0].x509_svid, svid.x509.chain.concat());
    assert_eq!(response.svids[0].x509_svid_key, *svid.key_pkcs8);

    // Written by a task of its own: waited for, then read.
    let health_file = crate::health::health_path(&agent.socket);
    let health = loop {
        if let Some(h) = crate::health::read(&health_file).unwrap() {
            break h;
        }
        assert!(
            agent.started.elapsed() < Duration::from_secs(5),
            "no health file"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        health.problem(),
        None,
        "an unreachable server is no health problem"
    );
    agent.stop().await;
}

#[tokio::test]
async fn federated_bundles_survive_an_agent_restart() {
    let ca = TestCa::new();
    let b = Peer::new("b.test", "b1");
    let me = federating(entry("e1", "/cached", &my_uid_selector(), ""), &["b.test"]);
    let svid = ca.issue("/cached", Duration::from_secs(600));
    let cached = with_federated(
        snapshot(&ca, vec![(me, Some(svid))]),
        vec![b.bundle(&[], 1)],
    );
    let agent = restart_with(&ca, &cached);

    let response = agent.first_x509().await;
    assert_eq!(
        response.federated_bundles,
        [("spiffe://b.test".to_string(), b.cert.clone())].into()
    );
    let mut client = agent.client().await;
    let jwt = client
        .fetch_jwt_bundles(crate::cli::client::request(JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(jwks_kids(&jwt.bundles["spiffe://b.test"]), ["b1"]);
    let validated = client
        .validate_jwtsvid(crate::cli::client::request(ValidateJwtsvidRequest {
            audience: "svc".into(),
            svid: b.token(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(validated.spiffe_id, "spiffe://b.test/svc");
    agent.stop().await;
}
