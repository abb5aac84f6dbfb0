//! A dockerd the test starts and stops, with the containerd it runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::workload::SCRIPT;
use super::{run_ok, tool, unmount_under, Workload, PATIENCE};
use crate::process::Proc;
use crate::wait;

/// A dockerd of the test's own: its own data and exec roots, socket and
/// containerd, no iptables rules and no bridge.
pub struct Dockerd {
    dir: TempDir,
    daemon: Option<Proc>,
}

impl Dockerd {
    pub async fn start() -> Dockerd {
        let dir = tempfile::Builder::new()
            .prefix("sgd")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        let mut cmd = tool("dockerd");
        cmd.arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", root.join("docker.sock").display()))
            .args(["--iptables=false", "--bridge=none", "--log-level=warn"]);
        let daemon = Proc::spawn("dockerd", cmd, root);
        let dockerd = Dockerd {
            dir,
            daemon: Some(daemon),
        };
        wait::until("dockerd to answer", PATIENCE, || async {
            let mut version = dockerd.cmd();
            version
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            version.status().ok()?.success().then_some(())
        })
        .await;
        dockerd
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// `docker -H <this daemon>`.
    pub fn cmd(&self) -> Command {
        let mut cmd = tool("docker");
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket().display()));
        cmd
    }

    /// Imports the workload's rootfs as image `tag`; the image id.
    pub fn import(&self, workload: &Workload, tag: &str) -> String {
        let tar = self.dir.path().join("rootfs.tar");
        let mut pack = tool("tar");
        pack.arg("-C")
            .arg(workload.rootfs())
            .arg("-cf")
            .arg(&tar)
            .arg(".");
        run_ok(pack);
        let mut import = self.cmd();
        import.arg("import").arg(&tar).arg(tag);
        run_ok(import)
    }

    /// Creates (without starting) a container of `image` running the
    /// workload, with `extra` flags; its id.
    pub fn create(
        &self,
        workload: &Workload,
        image: &str,
        agent_socket: &Path,
        extra: &[&str],
    ) -> String {
        let mut cmd = self.cmd();
        cmd.args(["create", "--network", "none"])
            .args(workload.volume_args(agent_socket))
            .args(extra)
            .arg(image)
            .args(["/bin/sh", "-c", SCRIPT]);
        run_ok(cmd)
    }

    pub fn start_container(&self, id: &str) {
        let mut cmd = self.cmd();
        cmd.args(["start", id]);
        run_ok(cmd);
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let listed = self.cmd().args(["ps", "--all", "--quiet"]).output();
        let ids = listed
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = self.cmd().args(["rm", "--force", id]).output();
        }
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate();
        }
        // dockerd stops the containerd it started; one killed hard cannot.
        // The pid file may be stale: the pid must still be that containerd
        // (its config is under our exec root).
        let exec_root = self.dir.path().join("exec");
        let pid = std::fs::read_to_string(exec_root.join("containerd/containerd.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*exec_root.to_string_lossy()) {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        unmount_under(self.dir.path());
    }
}
