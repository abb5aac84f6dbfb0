//! The `container` workload attestor: `container:id:<id>`,
//! `container:runtime:<docker|containerd|podman|crio>` and
//! `k8s:pod-uid:<uid>` from the caller's cgroup; with an Engine API socket
//! configured, also `docker:label:<k>:<v>`, `docker:image_id:<id>` and the
//! allow-listed `docker:env:<k>:<v>`. An engine that fails or is slow costs
//! only the `docker:` selectors (logged); the cgroup ones still hold.

pub mod cgroup;
pub mod docker;

use std::path::PathBuf;

use async_trait::async_trait;
use signet_core::Selector;

use super::{
    cgroup as proc_cgroup, AttestOptions, PeerInfo, WorkloadAttestError, WorkloadAttestor,
};
use cgroup::{find_container, ContainerInfo};
use docker::DockerClient;

#[derive(Clone)]
pub struct ContainerAttestor {
    procfs_root: PathBuf,
    docker: Option<(DockerClient, Vec<String>)>,
}

impl ContainerAttestor {
    pub fn new(procfs_root: impl Into<PathBuf>) -> Self {
        Self {
            procfs_root: procfs_root.into(),
            docker: None,
        }
    }

    /// Adds the Engine API lookups; `env_allow` names the env keys exposed.
    pub fn with_docker(mut self, client: DockerClient, env_allow: Vec<String>) -> Self {
        self.docker = Some((client, env_allow));
        self
    }

    /// The cgroup half (blocking: reads procfs).
    pub fn container_of(&self, pid: i32) -> Result<Option<ContainerInfo>, WorkloadAttestError> {
        let text = proc_cgroup::read_for_pid(&self.procfs_root, pid)?;
        Ok(find_container(&proc_cgroup::parse(&text)))
    }
}

/// The cgroup selectors of a container.
pub fn container_selectors(info: &ContainerInfo) -> Vec<Selector> {
    let mut out = vec![
        Selector::new("container", &format!("id:{}", info.id)),
        Selector::new("container", &format!("runtime:{}", info.runtime.as_str())),
    ];
    if let Some(uid) = &info.pod_uid {
        out.push(Selector::new("k8s", &format!("pod-uid:{uid}")));
    }
    out.into_iter().filter_map(Result::ok).collect()
}

#[async_trait]
impl WorkloadAttestor for ContainerAttestor {
    async fn attest(
        &self,
        peer: &PeerInfo,
        _options: AttestOptions,
    ) -> Result<Vec<Selector>, WorkloadAttestError> {
        let pid = peer.pid.ok_or(WorkloadAttestError::NoPid)?;
        let this = self.clone();
        let info = tokio::task::spawn_blocking(move || this.container_of(pid))
            .await
            .map_err(|e| WorkloadAttestError::Task(e.to_string()))??;
        let Some(info) = info else {
            return Ok(Vec::new());
        };
        let mut selectors = container_selectors(&info);
        // The Engine API knows Docker and Podman containers only.
        let engine_knows = matches!(
            info.runtime,
            cgroup::Runtime::Docker | cgroup::Runtime::Podman
        );
        if let (Some((client, env_allow)), true) = (&self.docker, engine_knows) {
            match client.inspect(&info.id).await {
                Ok(inspect) => selectors.extend(
                    inspect
                        .selector_values(env_allow)
                        .iter()
                        .filter_map(|v| Selector::new("docker", v).ok()),
                ),
                Err(e) => tracing::error!(
                    pid,
                    container = %info.id,
                    error = %e,
                    "container engine lookup failed; no docker: selectors"
                ),
            }
        }
        Ok(selectors)
    }
}

#[cfg(test)]
mod tests;
