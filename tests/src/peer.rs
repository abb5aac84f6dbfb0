//! Driving `signet-test-peer` (the attacker of the security tests) as other
//! users, reading its reports, and what the tests measure of a daemon.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use tempfile::TempDir;

use crate::bins::bins;
use crate::wait;

/// A uid no test runs as, with no entries of its own unless a test makes them.
pub const NOBODY: u32 = 65534;

/// `signet-test-peer <args>` as `uid` (its gid the same number).
pub fn peer_as(uid: u32, args: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&bins().peer);
    cmd.args(args).uid(uid).gid(uid);
    cmd
}

/// A peer process killed (and reaped) when the test is done with it, even
/// when an assertion fails first.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `peer_as(uid, args)` started, killed on drop.
pub fn spawn_peer(uid: u32, args: &[&str]) -> KillOnDrop {
    KillOnDrop(peer_as(uid, args).spawn().expect("spawn signet-test-peer"))
}

/// The peer's status file at `path`, once `accept` takes it.
pub async fn status_until<T>(
    what: &str,
    path: &Path,
    within: Duration,
    accept: impl Fn(&serde_json::Value) -> Option<T>,
) -> T {
    let accept = &accept;
    wait::until(what, within, || async move {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        accept(&v)
    })
    .await
}

/// A directory `uid` may write its reports to.
pub fn dir_for(uid: u32) -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("sgp")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    nix::unistd::chown(
        dir.path(),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(uid)),
    )
    .expect("chown the report dir (the security tests run as root)");
    dir
}

/// The JSON report at `path`, once it is there.
pub async fn report(path: &Path, within: Duration) -> serde_json::Value {
    let what = format!("report {}", path.display());
    wait::until(&what, within, || async move {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    })
    .await
}

/// Spawns the command `make` builds until the child gets `pid` (the kernel
/// hands out the pid after `ns_last_pid`; another process may take it
/// first, so this retries). `None` when it never worked.
pub fn spawn_with_pid(pid: u32, make: impl Fn() -> Command) -> Option<Child> {
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("write ns_last_pid (the security tests run as root)");
        let mut child = make().spawn().expect("spawn");
        if child.id() == pid {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

/// Resident and peak resident memory of `pid`, in KiB (VmRSS, VmHWM).
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak resident memory of `pid` to its current RSS (writing 5
/// to /proc/<pid>/clear_refs), so VmHWM measures what comes next.
pub fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
}

/// A copy of the peer binary at `path` (mode 0755), for tests that need
/// the same program under another path or inode.
pub fn copy_peer_to(path: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(&bins().peer, path).expect("copy the peer binary");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.to_path_buf()
}
