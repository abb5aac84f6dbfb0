//! BatchCreateEntry and `signet-server entry create --data` against an
//! in-process server: a bad entry is refused on its own, the others are
//! stored, and each reaches a connected agent's Sync stream as it would
//! through CreateEntry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use signet_core::SystemClock;
use signet_proto::admin::admin_client::AdminClient;
use signet_proto::admin::{
    self, BatchCreateEntryRequest, CountEntriesRequest, CreateJoinTokenRequest, ListEntriesRequest,
};
use signet_proto::node::SyncRequest;
use signet_server::app::{start, RunningServer};
use signet_server::config::{FileConfig, RuntimeConfig};
use tonic::transport::Channel;
use tonic::Code;

use support::JoinedAgent;

async fn server(dir: &Path) -> (RunningServer, AdminClient<Channel>, Vec<Vec<u8>>) {
    let config = RuntimeConfig::try_from(FileConfig {
        data_dir: Some(dir.join("data")),
        admin_socket: Some(dir.join("admin.sock")),
        bind: Some("127.0.0.1:0".into()),
        ..FileConfig::default()
    })
    .unwrap();
    let server = start(config, Arc::new(SystemClock)).await.unwrap();
    let mut admin = signet_server::cli::client::connect(&server.admin_socket)
        .await
        .unwrap();
    let bundle = admin
        .get_bundle(admin::GetBundleRequest {})
        .await
        .unwrap()
        .into_inner()
        .x509_authorities;
    (server, admin, bundle)
}

async fn joined_agent(
    server: &RunningServer,
    admin: &mut AdminClient<Channel>,
    bundle: &[Vec<u8>],
) -> JoinedAgent {
    let token = admin
        .create_join_token(CreateJoinTokenRequest { ttl: 0 })
        .await
        .unwrap()
        .into_inner()
        .token;
    JoinedAgent::attest(server.node_addr, bundle, &token).await
}

fn entry(spiffe_id: &str, parent: &str, selector: &str) -> admin::Entry {
    admin::Entry {
        spiffe_id: spiffe_id.into(),
        parent_id: parent.into(),
        selectors: vec![selector.into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_bad_entry_is_refused_alone_and_each_created_one_reaches_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut admin, bundle) = server(dir.path()).await;
    let agent = joined_agent(&server, &mut admin, &bundle).await;
    let parent = agent.id.to_string();
    let mut node = agent.client(server.node_addr, &bundle).await;
    let mut sync = node
        .sync(SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let snapshot = sync.message().await.unwrap().unwrap();
    assert!(snapshot.snapshot && snapshot.entries.is_empty());

    let results = admin
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![
                entry("spiffe://example.org/web", &parent, "unix:uid:1000"),
                entry("spiffe://example.org/bad", &parent, "unix"),
                entry("spiffe://example.org/db", &parent, "unix:uid:1001"),
                // The same as the first: refused by the store, not the validation.
                entry("spiffe://example.org/web", &parent, "unix:uid:1000"),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;

    let codes: Vec<Code> = results.iter().map(|r| Code::from(r.error_code)).collect();
    assert_eq!(
        codes,
        [
            Code::Ok,
            Code::InvalidArgument,
            Code::Ok,
            Code::AlreadyExists
        ]
    );
    assert!(
        results[1]
            .error_message
            .starts_with("invalid selector \"unix\""),
        "{}",
        results[1].error_message
    );
    assert!(results[1].entry.is_none() && results[3].entry.is_none());
    let web = results[0].entry.clone().unwrap();
    let db = results[2].entry.clone().unwrap();
    assert_eq!(
        (web.spiffe_id.as_str(), db.spiffe_id.as_str()),
        ("spiffe://example.org/web", "spiffe://example.org/db")
    );
    assert!(results[3].error_message.contains(&web.id));

    let mut listed = admin
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    listed.sort_by_key(|e| e.revision);
    assert_eq!(listed, vec![web.clone(), db.clone()]);

    // Each created entry reaches the stream once, in order (entries waiting
    // together may share a message).
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(5), sync.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(!msg.snapshot);
        ids.extend(msg.entries.into_iter().map(|e| e.id));
    }
    assert_eq!(ids, [web.id.clone(), db.id.clone()]);
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_batch_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut admin, _) = server(dir.path()).await;
    let entries = (0..1001)
        .map(|i| {
            entry(
                &format!("spiffe://example.org/w{i}"),
                "spiffe://example.org/a",
                "unix:uid:1",
            )
        })
        .collect();
    let err = admin
        .batch_create_entry(BatchCreateEntryRequest { entries })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "a batch holds at most 1000 entries, got 1001; split it"
    );
    let count = admin
        .count_entries(CountEntriesRequest {})
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, 0);
    server.stop().await;
}

/// Runs `signet-server entry create --data FILE` (blocking, so off the
/// runtime's threads), `stdin` piped in; exit success, stdout, stderr.
async fn cli_create(socket: &Path, file: &str, stdin: &str) -> (bool, String, String) {
    let (socket, file, stdin) = (socket.to_owned(), file.to_owned(), stdin.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_signet-server"))
            .args(["entry", "create", "--data", &file, "--admin-socket"])
            .arg(&socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn cli_creates_entries_from_a_file_one_line_each_and_exits_1_on_any_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut admin, _) = server(dir.path()).await;
    let file = dir.path().join("entries.json");
    std::fs::write(
        &file,
        r#"{"entries": [
            {"spiffe_id": "spiffe://example.org/web", "parent_id": "spiffe://example.org/a",
             "selectors": ["unix:uid:1000"], "x509_svid_ttl": "1h", "dns_names": ["web.local"]},
            {"spiffe_id": "spiffe://other.org/x", "parent_id": "spiffe://example.org/a",
             "selectors": ["unix:uid:1"]},
            {"spiffe_id": "spiffe://example.org/edge", "selectors": ["x509pop:subject:cn:edge-1"],
             "node": true}
        ]}"#,
    )
    .unwrap();
    let (ok, stdout, stderr) = cli_create(&server.admin_socket, file.to_str().unwrap(), "").await;
    assert!(!ok);
    assert_eq!(stderr, "Error: 1 of 3 entries failed\n");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        lines[1],
        "error: spiffe_id \"spiffe://other.org/x\" is not in the server's trust domain \"example.org\""
    );
    let listed = admin
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let by_id = |id: &str| listed.iter().find(|e| e.id == id).unwrap().clone();
    let web = by_id(lines[0]);
    assert_eq!(
        (web.spiffe_id.as_str(), web.x509_svid_ttl, web.dns_names),
        (
            "spiffe://example.org/web",
            3600,
            vec!["web.local".to_string()]
        )
    );
    assert!(by_id(lines[2]).node);

    // `-` reads stdin; all created: exit 0.
    let (ok, stdout, stderr) = cli_create(
        &server.admin_socket,
        "-",
        r#"{"entries": [{"spiffe_id": "spiffe://example.org/api",
            "parent_id": "spiffe://example.org/a", "selectors": ["unix:uid:7"]}]}"#,
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 1);
    assert_eq!(entry_count(&mut admin).await, 3);
    server.stop().await;
}

async fn entry_count(admin: &mut AdminClient<Channel>) -> u64 {
    admin
        .count_entries(CountEntriesRequest {})
        .await
        .unwrap()
        .into_inner()
        .count
}

/// 2,500 entries for one agent: its snapshot arrives in parts of 1,000,
/// 1,000 and 500, all at one revision, each but the last saying that more
/// follows, and then live changes continue on the same stream.
#[tokio::test]
async fn a_large_snapshot_comes_in_parts_that_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut admin, bundle) = server(dir.path()).await;
    let agent = joined_agent(&server, &mut admin, &bundle).await;
    let parent = agent.id.to_string();
    for batch in 0..3 {
        let entries = (0..1000)
            .map(|i| batch * 1000 + i)
            .take_while(|n| *n < 2500)
            .map(|n| entry(&format!("spiffe://example.org/w{n}"), &parent, "unix:uid:1"))
            .collect();
        let results = admin
            .batch_create_entry(BatchCreateEntryRequest { entries })
            .await
            .unwrap()
            .into_inner()
            .results;
        assert!(results.iter().all(|r| r.error_code == 0));
    }

    let mut node = agent.client(server.node_addr, &bundle).await;
    let mut sync = node
        .sync(SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut parts = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    loop {
        let msg = sync.message().await.unwrap().unwrap();
        assert!(msg.snapshot);
        ids.extend(msg.entries.iter().map(|e| e.spiffe_id.clone()));
        parts.push((msg.entries.len(), msg.revision, msg.snapshot_continues));
        if !msg.snapshot_continues {
            break;
        }
    }
    let revision = parts[0].1;
    assert_eq!(
        parts,
        [
            (1000, revision, true),
            (1000, revision, true),
            (500, revision, false)
        ]
    );
    assert_eq!(ids.len(), 2500, "every entry exactly once");

    let more = admin
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![entry("spiffe://example.org/late", &parent, "unix:uid:2")],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let msg = tokio::time::timeout(Duration::from_secs(5), sync.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!msg.snapshot && msg.revision > revision);
    assert_eq!(msg.entries.len(), 1);
    assert_eq!(
        Some(&msg.entries[0].id),
        more[0].entry.as_ref().map(|e| &e.id)
    );
    server.stop().await;
}
