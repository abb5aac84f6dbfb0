//! The audit chain leaving the datastore and ageing: forwarding to syslog
//! (RFC 5424 over UDP and a Unix datagram socket) and to a rotating
//! JSON-lines file, retention that prunes only through a signed
//! checkpoint (what remains still verifies), and authority transitions
//! recorded as the CA makes them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use signet_tests::{wait, TestServer};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn records(server: &TestServer, kind: &str) -> Vec<Value> {
    let out = server.audit(&["show", "--kind", kind, "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["records"].as_array().unwrap().clone()
}

/// `<PRI>1 TIMESTAMP HOST APP PID MSGID - MSG` split into its parts.
fn rfc5424(datagram: &str) -> (u32, String, String, Value) {
    let (pri, rest) = datagram
        .strip_prefix('<')
        .and_then(|d| d.split_once(">1 "))
        .unwrap_or_else(|| panic!("not RFC 5424: {datagram}"));
    let parts: Vec<&str> = rest.splitn(7, ' ').collect();
    assert_eq!(parts.len(), 7, "{datagram}");
    assert!(
        parts[0].ends_with('Z') && parts[0].contains('.'),
        "{datagram}"
    );
    assert_eq!(parts[2], "signet-server");
    assert_eq!(parts[5], "-", "no structured data");
    (
        pri.parse().unwrap(),
        parts[4].to_owned(),
        parts[2].to_owned(),
        serde_json::from_str(parts[6]).unwrap(),
    )
}

#[tokio::test]
async fn records_reach_syslog_over_udp_and_a_rotating_json_lines_file() {
    let dir = tempfile::tempdir().unwrap();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let file = dir.path().join("audit.jsonl");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\nsyslog = \"udp:{}\"\njson_file = {:?}\njson_file_max_bytes = 400\njson_file_keep = 20\n",
            udp.local_addr().unwrap(),
            s(&file)
        ),
    )
    .unwrap();
    let server = TestServer::start_with(&["--config", s(&config)]).await;
    for _ in 0..8 {
        server.join_token();
    }
    let refused = server.cli(&["entry", "delete", "--id", "no-such-entry"]);
    assert!(!refused.status.success());

    // Nine admin records, in chain order, each once.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while got.len() < 9 {
        let n = tokio::time::timeout(Duration::from_secs(15), udp.recv(&mut buf))
            .await
            .expect("a syslog datagram within 15 s")
            .unwrap();
        got.push(rfc5424(std::str::from_utf8(&buf[..n]).unwrap()));
    }
    let seqs: Vec<u64> = got.iter().map(|g| g.3["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    for (pri, msgid, _, record) in &got[..8] {
        // authpriv.notice
        assert_eq!((*pri, msgid.as_str()), (85, "admin"), "{record}");
        assert_eq!(record["verb"], "token.generate");
        assert!(record["hash"].as_str().unwrap().len() == 64);
    }
    // A refusal is a warning.
    assert_eq!(got[8].0, 84);
    assert_eq!(got[8].3["verb"], "entry.delete");

    // The file holds the same records, in order, each once, rotated past
    // 400 bytes (read again until no rotation raced the reading).
    let read_all = || {
        let mut names: Vec<String> = (1..=20).rev().map(|n| format!("audit.jsonl.{n}")).collect();
        names.push("audit.jsonl".into());
        let mut seqs = Vec::new();
        for name in names {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
            seqs.extend(text.lines().map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            }));
        }
        seqs
    };
    wait::until(
        "the records in the rotated files",
        Duration::from_secs(15),
        || async {
            (dir.path().join("audit.jsonl.1").exists() && read_all() == seqs).then_some(())
        },
    )
    .await;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).map_or_else(
        |_| {
            std::fs::metadata(dir.path().join("audit.jsonl.1"))
                .unwrap()
                .permissions()
        },
        |m| m.permissions(),
    ));
    assert_eq!(mode & 0o777, 0o600);
}

async fn next_datagram(sock: &tokio::net::UnixDatagram) -> Value {
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(Duration::from_secs(15), sock.recv(&mut buf))
        .await
        .expect("a datagram within 15 s")
        .unwrap();
    rfc5424(std::str::from_utf8(&buf[..n]).unwrap()).3
}

#[tokio::test]
async fn records_reach_a_unix_datagram_socket_and_resume_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!("[audit]\nsyslog = \"unix:{}\"\n", s(&sock_path)),
    )
    .unwrap();
    let mut server = TestServer::start_with(&["--config", s(&config)]).await;
    server.join_token();
    let first = next_datagram(&sock).await;
    server.stop();
    // Written while forwarding was down: sent after the restart, once.
    server.start_again().await;
    server.join_token();
    let mut seen = BTreeSet::new();
    seen.insert(first["seq"].as_u64().unwrap());
    let after = next_datagram(&sock).await;
    assert!(
        seen.insert(after["seq"].as_u64().unwrap()),
        "not sent twice"
    );
    assert!(after["seq"].as_u64().unwrap() > first["seq"].as_u64().unwrap());
}

#[tokio::test]
async fn retention_prunes_through_a_checkpoint_and_what_remains_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "ca_ttl = \"7d\"\n[audit]\ncheckpoint_every = 3\nretention = \"1d\"\n",
    )
    .unwrap();
    let mut server = TestServer::start_with(&["--config", s(&config)]).await;
    for _ in 0..10 {
        server.join_token();
    }
    server.stop();
    let before = server.audit(&["verify", "--output", "json"]);
    assert!(before.status.success());
    let before: Value = serde_json::from_slice(&before.stdout).unwrap();

    // Two days later the records are past their retention.
    server.set_prefix(&["faketime", "-f", "+2d"]);
    server.start_again().await;
    let pruned = wait::until(
        "an audit_pruned record",
        Duration::from_secs(20),
        || async { records(&server, "audit_pruned").into_iter().next() },
    )
    .await;
    let through = pruned["through_seq"].as_u64().unwrap();
    assert!(through >= 8, "{pruned}");
    assert_eq!(pruned["records"].as_u64().unwrap(), through);
    // What remains verifies from the checkpoint it was pruned through, with
    // the datastore's checkpoints and the file's.
    let file = server.data_dir.join("audit_checkpoints.jsonl");
    let after = server.audit(&["verify", "--checkpoints", s(&file), "--output", "json"]);
    assert!(
        after.status.success(),
        "{}{}",
        String::from_utf8_lossy(&after.stdout),
        String::from_utf8_lossy(&after.stderr)
    );
    let shown = server.audit(&["show", "--output", "json"]);
    let v: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let first = v["records"][0]["seq"].as_u64().unwrap();
    // The checkpointed record stays first; the chain goes on from it.
    assert_eq!(first, through + 1, "{v}");
    let last = v["records"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "audit_pruned");
    assert!(last["seq"].as_u64().unwrap() > first);
    assert!(
        before["records_checked"].as_u64().unwrap() >= 10,
        "{before}"
    );
}

#[tokio::test]
async fn authority_transitions_are_recorded_as_the_ca_makes_them() {
    let server = TestServer::start().await;
    let old = server.cli_ok(&["authority", "x509", "show", "--output", "json"]);
    let old: Value = serde_json::from_str(&old).unwrap();
    let old_id = old["authorities"][0]["id"].as_str().unwrap().to_owned();
    let new_id = server.cli_ok(&["authority", "x509", "prepare"]);
    server.cli_ok(&["authority", "x509", "activate"]);
    let got = wait::until(
        "three authority transitions",
        Duration::from_secs(15),
        || async {
            let r = records(&server, "authority_transition");
            (r.len() >= 3).then_some(r)
        },
    )
    .await;
    let seen: BTreeSet<(String, String)> = got
        .iter()
        .map(|r| {
            assert_eq!(r["authority"], "x509");
            (
                r["authority_id"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        (new_id.clone(), "prepared".to_owned()),
        (new_id, "active".to_owned()),
        (old_id, "old".to_owned()),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, want, "{got:?}");
}
