//! Podman on roots of its own, its Engine API served on a private socket.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::workload::SCRIPT;
use super::{run_ok, tool, unmount_under, Workload, PATIENCE};
use crate::process::Proc;
use crate::wait;

/// Container limits at or below the host's hard limits: the sandbox's root
/// lacks CAP_SYS_RESOURCE, so runc cannot raise them.
fn ulimit(resource: nix::sys::resource::Resource) -> u64 {
    let (_, hard) = nix::sys::resource::getrlimit(resource).expect("getrlimit");
    hard.min(1024)
}

/// Podman on storage, run and tmp roots of its own (runc, the cgroupfs
/// manager, no systemd), with its Engine API served on a private socket.
pub struct Podman {
    dir: TempDir,
    service: Option<Proc>,
}

impl Podman {
    pub async fn start() -> Podman {
        use nix::sys::resource::Resource;
        let dir = tempfile::Builder::new()
            .prefix("sgpm")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        // The ulimits are defaults rather than flags so that a pod's infra
        // container gets them too. What podman keeps outside its roots by
        // default (tmp dir, the SHM lock table, which a fresh tmp dir would
        // reset under another instance) is kept under ours.
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile={n}:{n}\", \"nproc={p}:{p}\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\n\
             events_logger = \"file\"\ntmp_dir = \"{tmp}\"\nlock_type = \"file\"\n\
             [network]\nnetwork_config_dir = \"{net}\"\n",
            n = ulimit(Resource::RLIMIT_NOFILE),
            p = ulimit(Resource::RLIMIT_NPROC),
            tmp = root.join("tmp").display(),
            net = root.join("net").display(),
        );
        std::fs::write(root.join("containers.conf"), conf).expect("containers.conf");
        let mut podman = Podman { dir, service: None };
        let mut service = podman.cmd();
        service
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", podman.socket().display()));
        podman.service = Some(Proc::spawn("podman-service", service, podman.dir.path()));
        let socket = podman.socket();
        wait::until("podman's Engine API socket", PATIENCE, || {
            let socket = socket.clone();
            async move { std::os::unix::net::UnixStream::connect(socket).ok() }
        })
        .await;
        podman
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("podman.sock")
    }

    /// `podman` on this instance's roots and config.
    pub fn cmd(&self) -> Command {
        let root = self.dir.path();
        let mut cmd = tool("podman");
        cmd.env("CONTAINERS_CONF", root.join("containers.conf"))
            .arg("--root")
            .arg(root.join("storage"))
            .arg("--runroot")
            .arg(root.join("run"));
        cmd
    }

    /// `podman <args>`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let mut cmd = self.cmd();
        cmd.args(args);
        run_ok(cmd)
    }

    /// Creates (without starting) the workload's container with `extra`
    /// flags (labels, env, `--pod`); its id.
    pub fn create(&self, workload: &Workload, agent_socket: &Path, extra: &[&str]) -> String {
        let mut cmd = self.cmd();
        cmd.args(["create", "--runtime", "runc"]);
        if !extra.contains(&"--pod") {
            cmd.args(["--network", "none"]);
        }
        cmd.args(workload.volume_args(agent_socket))
            .args(extra)
            .arg("--rootfs")
            .arg(workload.rootfs())
            .args(["/bin/sh", "-c", SCRIPT]);
        run_ok(cmd)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // `--time 0`: the workload's shell, pid 1 of its namespace, ignores
        // SIGTERM, and podman would wait 10 s per container for it.
        for args in [&["pod", "rm"][..], &["rm"]] {
            let _ = self
                .cmd()
                .args(args)
                .args(["--force", "--time", "0", "--all"])
                .output();
        }
        if let Some(mut service) = self.service.take() {
            service.terminate();
        }
        unmount_under(self.dir.path());
    }
}
