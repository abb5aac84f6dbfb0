//! Real containers for the container attestor's end-to-end tests: Podman on
//! storage roots of its own with its Engine API service, a dockerd of the
//! test's own, and bare runc under a chosen cgroup path. Each runs a busybox
//! rootfs whose shell keeps fetching X.509-SVIDs with `signet-agent api
//! fetch x509` over the agent's bind-mounted socket. Everything started here
//! is torn down on drop, even when a test fails.

mod docker;
mod podman;
mod runc;
mod workload;

pub use docker::Dockerd;
pub use podman::Podman;
pub use runc::RuncContainer;
pub use workload::Workload;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{AgentOptions, TestAgent, TestServer};

/// How long a daemon gets to answer and a workload to be served.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Each program the tests run, with the Debian package that has it.
const TOOLS: &[(&str, &str)] = &[
    ("podman", "podman"),
    ("conmon", "conmon"),
    ("catatonit", "catatonit"),
    ("runc", "runc"),
    ("dockerd", "docker.io"),
    ("containerd", "docker.io"),
    ("docker", "docker.io"),
    ("busybox", "busybox-static"),
    ("ldd", "libc-bin"),
    ("tar", "tar"),
];

/// Fails the test, saying what to do, unless it runs as root with every
/// engine installed: these tests are never skipped.
pub fn require_container_tools() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the container tests start real containers and daemons: run them as root (CI does)"
    );
    let mut missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(tool, _)| which(tool).is_none())
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "the container tests need {list}: apt-get install -y {list} (.ci/run installs them)",
        list = missing.join(" ")
    );
}

/// PATH and the sbin directories a non-login PATH may lack (runc, dockerd).
fn search_path() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .collect()
}

fn which(name: &str) -> Option<PathBuf> {
    search_path()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `name` found on [`search_path`], which it also gets as its PATH: the
/// engines look their helpers up there.
fn tool(name: &str) -> Command {
    let mut cmd = Command::new(which(name).unwrap_or_else(|| name.into()));
    if let Ok(path) = std::env::join_paths(search_path()) {
        cmd.env("PATH", path);
    }
    cmd
}

/// Runs `cmd`, fails the test with its stderr unless it succeeds; stdout.
fn run_ok(mut cmd: Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A fresh random id in Kubernetes' UID shape (8-4-4-4-12 hex).
pub fn random_uid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("a random uuid")
        .trim()
        .to_owned()
}

/// A fresh random 64-hex container id.
pub fn random_container_id() -> String {
    format!("{}{}", random_uid(), random_uid()).replace('-', "")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn spiffe_ids(fetch: &serde_json::Value) -> BTreeSet<String> {
    fetch["svids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|svid| svid["spiffe_id"].as_str().map(str::to_owned))
        .collect()
}

/// The SPIFFE IDs the same client gets run on the host, and its stderr.
pub fn host_fetch(agent: &TestAgent) -> (BTreeSet<String>, String) {
    let out = agent.cli(&["api", "fetch", "x509", "--output", "json", "--timeout", "2"]);
    let ids = serde_json::from_slice(&out.stdout)
        .map(|v| spiffe_ids(&v))
        .unwrap_or_default();
    (ids, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// An agent running the unix and container attestors; with `engine`, it
/// asks that Engine API socket for the `docker:` selectors, `SIGNET_TEST_ENV`
/// being the one env key allowed.
pub async fn start_agent(server: &TestServer, dir: &Path, engine: Option<&Path>) -> TestAgent {
    let mut config = String::from("workload_attestors = [\"unix\", \"container\"]\n");
    if let Some(socket) = engine {
        config.push_str(&format!(
            "[workload_attestor.docker]\nsocket_path = \"{}\"\n\
             env_allow = [\"SIGNET_TEST_ENV\"]\ntimeout = \"5s\"\n",
            socket.display()
        ));
    }
    let file = dir.join("agent.toml");
    std::fs::write(&file, config).expect("agent config");
    let options = AgentOptions {
        extra: vec!["--config".into(), s(&file).into()],
        ..AgentOptions::default()
    };
    let mut agent = TestAgent::spawn_opts(server, Some(&server.join_token()), options);
    agent.wait_healthy().await;
    agent
}

/// A cgroup the test names (a pod's, which the engines leave behind when
/// they remove the container's own), removed with what is below it from
/// every mounted hierarchy on drop. Best effort: one still holding a
/// process stays, so hold this longer than the containers in it.
pub struct OwnedCgroup(pub String);

impl Drop for OwnedCgroup {
    fn drop(&mut self) {
        remove_cgroup(&self.0);
    }
}

fn remove_cgroup(relative: &str) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let roots = mounts.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, mount_point, fs) = (fields.next()?, fields.next()?, fields.next()?);
        matches!(fs, "cgroup" | "cgroup2").then(|| PathBuf::from(mount_point))
    });
    for root in roots {
        remove_dirs_bottom_up(&root.join(relative.trim_start_matches('/')));
    }
}

fn remove_dirs_bottom_up(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_dirs_bottom_up(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Detaches whatever an engine left mounted under `dir`, deepest first, so
/// the temp dir can go.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = tool("umount").args(["--lazy", point]).status();
    }
}
