//! A container started by runc alone, placed in a cgroup the test names.

use std::path::Path;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::workload::SCRIPT;
use super::{run_ok, s, tool, Workload};

/// A container run by runc alone in a cgroup path of the test's choosing
/// (relative to each hierarchy's root), as a CRI runtime would place it.
/// runc removes that cgroup with the container, not its parents.
pub struct RuncContainer {
    dir: TempDir,
    id: String,
}

impl RuncContainer {
    /// Starts the workload as container `id` in `cgroups_path`.
    pub fn start(
        workload: &Workload,
        agent_socket: &Path,
        id: &str,
        cgroups_path: &str,
    ) -> RuncContainer {
        let dir = tempfile::Builder::new()
            .prefix("sgr")
            .tempdir()
            .expect("tempdir");
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).expect("bundle dir");
        let mut spec = tool("runc");
        spec.arg("spec").arg("--bundle").arg(&bundle);
        run_ok(spec);
        let config = bundle.join("config.json");
        let mut oci: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config).expect("config.json"))
                .expect("runc spec JSON");
        oci["process"]["args"] = serde_json::json!(["/bin/sh", "-c", SCRIPT]);
        oci["process"]["terminal"] = false.into();
        oci["root"] = serde_json::json!({ "path": s(&workload.rootfs()), "readonly": false });
        oci["linux"]["cgroupsPath"] = cgroups_path.into();
        let mounts = oci["mounts"].as_array_mut().expect("mounts");
        for (host, inside, ro) in workload.binds(agent_socket) {
            let mode = if ro { "ro" } else { "rw" };
            mounts.push(serde_json::json!({
                "destination": inside, "type": "bind", "source": s(&host),
                "options": ["rbind", mode],
            }));
        }
        std::fs::write(&config, oci.to_string()).expect("write config.json");
        let container = RuncContainer {
            dir,
            id: id.to_owned(),
        };
        // The detached container keeps runc's stdio: null, not pipes that
        // would never close. runc's own errors go to its log.
        let log = container.dir.path().join("runc.log");
        let mut run = container.runc();
        run.arg("--log")
            .arg(&log)
            .args(["run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = run.status().expect("run runc");
        assert!(
            status.success(),
            "runc run {id} failed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        container
    }

    /// `runc` with its state under this container's dir.
    fn runc(&self) -> Command {
        let mut cmd = tool("runc");
        cmd.arg("--root").arg(self.dir.path().join("state"));
        cmd
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = self.runc().args(["delete", "--force", &self.id]).output();
    }
}
