//! What a service manager sees of the daemons: the `Type=notify` messages on
//! a real `NOTIFY_SOCKET` (READY=1 only once the agent holds an identity, a
//! STATUS= line saying what it serves as or why it failed) and the exit
//! codes the packaged units tell apart (77: the agent needs an admin, 78: a
//! bad configuration, 1: anything a restart may fix). `packaging/check-boot`
//! checks the same under a real systemd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use signet_tests::agent::AgentOptions;
use signet_tests::bins::bins;
use signet_tests::{TestAgent, TestServer};

const PATIENCE: Duration = Duration::from_secs(30);

/// A socket standing in for systemd's notification socket.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket {
            _dir: dir,
            path,
            socket,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("NOTIFY_SOCKET".into(), self.path.display().to_string())]
    }

    /// The datagrams received so far (each `KEY=value` lines).
    fn received(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// Reads until a datagram has `want`; all read so far.
    async fn until(&self, want: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            seen.extend(self.received());
            if seen.iter().any(|m| m.contains(want)) {
                return seen;
            }
            tokio::task::yield_now().await;
        }
        panic!("no {want:?} within {PATIENCE:?}; got {seen:?}");
    }
}

async fn exit_of(agent: &mut TestAgent) -> ExitStatus {
    agent
        .proc
        .as_mut()
        .unwrap()
        .wait_exit(PATIENCE)
        .await
        .expect("the agent exits by itself")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_is_ready_only_once_attested_and_says_as_whom() {
    let server = TestServer::start().await;
    let notify = NotifySocket::bind();
    let token = server.join_token();
    let mut agent = TestAgent::spawn_opts(
        &server,
        Some(&token),
        AgentOptions {
            env: notify.env(),
            ..AgentOptions::default()
        },
    );
    let seen = notify.until("READY=1").await;
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(
        ready.contains(&format!(
            "STATUS=serving the Workload API as {}",
            agent.spiffe_id
        )),
        "{seen:?}"
    );
    // Ready meant attested: the server lists it and the API answers.
    assert!(server.cli_ok(&["agent", "list"]).contains(&agent.spiffe_id));
    agent.wait_healthy().await;

    // Restarted from its data dir (no token, the server not needed): ready
    // again as the same agent.
    agent.proc.as_mut().unwrap().terminate();
    let notify = NotifySocket::bind();
    agent.set_env(notify.env());
    agent.respawn();
    let seen = notify.until("READY=1").await;
    assert!(
        seen.iter().any(|m| m.contains(&agent.spiffe_id)),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_is_never_ready_and_exits_77_saying_why() {
    let server = TestServer::start().await;
    let used = server.join_token();
    // The token's one use.
    let mut first = TestAgent::spawn(&server, Some(&used));
    first.wait_healthy().await;

    let notify = NotifySocket::bind();
    let mut agent = TestAgent::spawn_opts(
        &server,
        Some(&used),
        AgentOptions {
            env: notify.env(),
            ..AgentOptions::default()
        },
    );
    let status = exit_of(&mut agent).await;
    assert_eq!(status.code(), Some(77), "{}", agent.log_text());
    let seen = notify.received();
    assert!(!seen.iter().any(|m| m.contains("READY=1")), "{seen:?}");
    let failed = seen
        .iter()
        .find(|m| m.contains("STATUS=failed: "))
        .unwrap_or_else(|| panic!("no failure status in {seen:?}"));
    assert!(
        failed.contains("join token does not exist or has already been used"),
        "{failed}"
    );
    let log = agent.log_text();
    assert!(
        log.lines().any(|l| l.contains(" ERROR ")
            && l.contains("node attestation failed: server refused attestation: PermissionDenied")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_say_whether_a_restart_can_help() {
    let server = TestServer::start().await;

    // No token and nothing cached: an admin must give one.
    let mut agent = TestAgent::spawn(&server, None);
    assert_eq!(exit_of(&mut agent).await.code(), Some(77));
    assert!(agent.log_text().contains("no join token was given"));

    // The server unreachable: a restart may well help.
    let mut gone = TestServer::start().await;
    let token = gone.join_token();
    gone.stop();
    let mut agent = TestAgent::spawn(&gone, Some(&token));
    assert_eq!(exit_of(&mut agent).await.code(), Some(1));
    let log = agent.log_text();
    assert!(log.contains("cannot connect to server"), "{log}");

    // A bad configuration file: agent and server alike.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "trust_domian = \"example.org\"\n").unwrap();
    let agent = run_binary(&bins().agent, &bad, dir.path());
    assert_eq!(agent.0.code(), Some(78), "{}", agent.1);
    assert!(agent.1.contains("trust_domian"), "{}", agent.1);
    let server = run_binary(&bins().server, &bad, dir.path());
    assert_eq!(server.0.code(), Some(78), "{}", server.1);
    assert!(server.1.contains("trust_domian"), "{}", server.1);
}

/// `<bin> run --config <config>`: its exit status and stderr.
fn run_binary(bin: &Path, config: &Path, dir: &Path) -> (ExitStatus, String) {
    let out = Command::new(bin)
        .args(["run", "--config"])
        .arg(config)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
