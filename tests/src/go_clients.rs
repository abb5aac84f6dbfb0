//! go-spiffe, the reference SPIFFE library for Go, as a third independent
//! Workload API client: `signet-go-check` (tests/go), built once into the
//! cache `scripts/build-go-clients` keeps, run against a test agent. Each of
//! its subcommands prints what it saw as JSON lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;

use crate::agent::TestAgent;

/// Longer than the program's own `--timeout` (15 s by default), so that its
/// error, not this fixture's, says what went wrong.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Runs `scripts/build-go-clients` once per test process: a no-op when the
/// cache holds the program built from today's tests/go, a Go build
/// otherwise (its progress on stderr). The script alone knows the cache
/// dir; it prints the binary's dir on stdout.
pub fn go_check_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-go-clients");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed: the go-spiffe tests need Go (and the Go module proxy on a fresh machine)",
            script.display()
        );
        let bin =
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("signet-go-check");
        assert!(
            bin.is_file(),
            "scripts/build-go-clients succeeded but {} is missing",
            bin.display()
        );
        bin
    })
}

/// `signet-go-check` pointed at one agent's Workload API.
pub struct GoCheck {
    endpoint: String,
}

/// A finished run: exit status, its JSON lines, its stderr.
#[derive(Debug)]
pub struct GoRun {
    pub success: bool,
    pub lines: Vec<Value>,
    pub stderr: String,
}

impl GoRun {
    /// The one line a successful subcommand prints; panics with its stderr
    /// when it failed.
    pub fn ok(&self) -> &Value {
        assert!(self.success, "signet-go-check failed: {}", self.stderr);
        assert_eq!(self.lines.len(), 1, "one JSON line, got {:?}", self.lines);
        &self.lines[0]
    }

    /// The stderr of a run that had to fail.
    pub fn failed(&self) -> &str {
        assert!(
            !self.success,
            "signet-go-check should have failed, printed {:?}",
            self.lines
        );
        &self.stderr
    }
}

impl GoCheck {
    pub fn new(agent: &TestAgent) -> GoCheck {
        GoCheck {
            endpoint: agent.endpoint(),
        }
    }

    fn command(&self, subcommand: &str, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(go_check_bin());
        cmd.arg(subcommand)
            .arg("--socket")
            .arg(&self.endpoint)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `subcommand` to its end.
    pub async fn run(&self, subcommand: &str, args: &[&str]) -> GoRun {
        let out = tokio::time::timeout(RUN_LIMIT, self.command(subcommand, args).output())
            .await
            .unwrap_or_else(|_| {
                panic!("signet-go-check {subcommand} still running after {RUN_LIMIT:?}")
            })
            .expect("run signet-go-check");
        GoRun {
            success: out.status.success(),
            lines: json_lines(&String::from_utf8_lossy(&out.stdout)),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `subcommand`, for a test that acts between the lines it prints
    /// (a server, a watch).
    pub fn spawn(&self, subcommand: &str, args: &[&str]) -> GoChild {
        let mut child = self
            .command(subcommand, args)
            .spawn()
            .expect("spawn signet-go-check");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        // Drained as it comes, so the child never blocks on a full pipe.
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        GoChild {
            name: subcommand.to_owned(),
            child,
            lines: BufReader::new(stdout).lines(),
            stderr,
        }
    }
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A running `signet-go-check`, killed when dropped.
pub struct GoChild {
    name: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
}

impl GoChild {
    /// The next JSON line, within `within`; panics with the program's stderr
    /// when it ends or stays silent instead.
    pub async fn next_line(&mut self, within: Duration) -> Value {
        match tokio::time::timeout(within, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("signet-go-check {}: not JSON ({e}): {line}", self.name)
            }),
            Ok(Ok(None)) => {
                let status = self.child.wait().await.ok();
                let stderr = self.stderr_text().await;
                panic!(
                    "signet-go-check {} ended ({status:?}) instead of printing a line: {stderr}",
                    self.name
                )
            }
            Ok(Err(e)) => panic!("signet-go-check {}: reading stdout: {e}", self.name),
            Err(_) => {
                let _ = self.child.kill().await;
                let stderr = self.stderr_text().await;
                panic!(
                    "signet-go-check {} printed nothing within {within:?}: {stderr}",
                    self.name
                )
            }
        }
    }

    /// Waits for the program to exit by itself; panics with its stderr if
    /// it fails or lingers.
    pub async fn wait_success(mut self) {
        let status = tokio::time::timeout(RUN_LIMIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("signet-go-check {} did not exit", self.name))
            .expect("wait for signet-go-check");
        if !status.success() {
            let stderr = self.stderr_text().await;
            panic!("signet-go-check {} failed ({status}): {stderr}", self.name);
        }
    }

    async fn stderr_text(&mut self) -> String {
        (&mut self.stderr).await.unwrap_or_default()
    }
}
