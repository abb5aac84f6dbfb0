//! The workload every engine runs: a busybox rootfs whose shell records its
//! cgroup file and keeps fetching X.509-SVIDs over the bind-mounted socket.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::{spiffe_ids, tool, which, PATIENCE};
use crate::bins::bins;
use crate::wait;

/// Where the client binary and the agent's socket appear in a container.
const CLIENT: &str = "/signet/signet-agent";
const SOCKET: &str = "/signet/api.sock";
const OUT: &str = "/out";

/// The workload: records its cgroup file, then fetches until stopped, each
/// success replacing `fetch.json` whole.
pub(super) const SCRIPT: &str = "cat /proc/self/cgroup > /out/cgroup; while true; do \
    if /signet/signet-agent api fetch x509 --socket-path /signet/api.sock \
    --output json --timeout 2 > /out/fetch.tmp 2> /out/fetch.err; \
    then mv /out/fetch.tmp /out/fetch.json; fi; sleep 0.2; done";

/// A busybox rootfs with the shared libraries of the client, which is
/// bind-mounted (not copied: a debug build is large), and a directory the
/// workload reports to.
pub struct Workload {
    dir: TempDir,
}

impl Workload {
    pub fn new() -> Workload {
        let dir = tempfile::Builder::new()
            .prefix("sgw")
            .tempdir()
            .expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        for sub in ["bin", "proc", "sys", "dev", "etc", "tmp", "signet", "out"] {
            std::fs::create_dir_all(rootfs.join(sub)).expect("rootfs dirs");
        }
        std::fs::create_dir_all(dir.path().join("out")).expect("out dir");
        let busybox = which("busybox").expect("busybox");
        std::fs::copy(&busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in ["sh", "cat", "mv", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("applet link");
        }
        for binary in [busybox.as_path(), bins().agent.as_path()] {
            copy_libraries(binary, &rootfs);
        }
        // Bind-mount targets.
        std::fs::write(rootfs.join("signet/signet-agent"), b"").expect("mount point");
        std::fs::write(rootfs.join("signet/api.sock"), b"").expect("mount point");
        Workload { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// (host path, container path, read-only) of each bind mount.
    pub(super) fn binds(&self, agent_socket: &Path) -> [(PathBuf, &'static str, bool); 3] {
        [
            (bins().agent.clone(), CLIENT, true),
            (agent_socket.to_path_buf(), SOCKET, false),
            (self.out(), OUT, false),
        ]
    }

    /// `-v host:container[:ro]` for each bind mount.
    pub(super) fn volume_args(&self, agent_socket: &Path) -> Vec<String> {
        self.binds(agent_socket)
            .iter()
            .flat_map(|(host, inside, ro)| {
                let suffix = if *ro { ":ro" } else { "" };
                [
                    "-v".to_owned(),
                    format!("{}:{inside}{suffix}", host.display()),
                ]
            })
            .collect()
    }

    /// The SPIFFE IDs of the workload's last successful fetch.
    fn fetched(&self) -> Option<BTreeSet<String>> {
        let text = std::fs::read_to_string(self.out().join("fetch.json")).ok()?;
        Some(spiffe_ids(&serde_json::from_str(&text).ok()?))
    }

    /// Waits until the workload is served exactly `want`, and returns what
    /// it was last served (empty if nothing) when that never happens.
    pub async fn served(&self, want: &BTreeSet<String>) -> BTreeSet<String> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let got = self.fetched().unwrap_or_default();
            if &got == want || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What a failure message needs: the container's cgroup file as the
    /// container itself read it, and its client's last error.
    pub fn diagnostics(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.out().join(name)).unwrap_or_default();
        format!(
            "the container's /proc/self/cgroup:\n{}\nits last fetch error: {}",
            read("cgroup"),
            read("fetch.err")
        )
    }

    /// The container's /proc/self/cgroup, once it has written it.
    pub async fn cgroup(&self) -> String {
        let path = self.out().join("cgroup");
        wait::until("the container's cgroup file", PATIENCE, || {
            let path = path.clone();
            async move { std::fs::read_to_string(path).ok().filter(|t| !t.is_empty()) }
        })
        .await
    }
}

impl Default for Workload {
    fn default() -> Self {
        Self::new()
    }
}

/// Copies the shared libraries `ldd` lists for `binary` to the same paths
/// under `rootfs` (nothing for a static binary).
fn copy_libraries(binary: &Path, rootfs: &Path) {
    let out = tool("ldd").arg(binary).output().expect("run ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    for lib in text.split_whitespace().filter(|w| w.starts_with('/')) {
        let target = rootfs.join(lib.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).expect("library dir");
        }
        std::fs::copy(lib, &target).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
    }
}
