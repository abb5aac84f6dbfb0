//! Finding the container a process runs in from its cgroup paths. Each
//! runtime names its cgroups its own way:
//! - Docker: `/docker/<id>` (cgroupfs driver), `docker-<id>.scope` (systemd);
//! - containerd / CRI: `/kubepods/<qos>/pod<uid>/<id>` (cgroupfs),
//!   `cri-containerd-<id>.scope` (systemd);
//! - Podman: `libpod-<id>.scope` (possibly with a `/container` child),
//!   `/libpod_parent/libpod-<id>` (cgroupfs), in a pod
//!   `<pod parent>/<pod id>/libpod-<id>` (a pod id is no Kubernetes UID);
//! - CRI-O: `crio-<id>.scope` (its `crio-conmon-` sibling is the monitor,
//!   not the container).
//!
//! Kubernetes pods appear as `pod<uid>` (dashes) or, under the systemd
//! driver, `kubepods-<qos>-pod<uid with underscores>.slice`.

use crate::attest::workload::cgroup::CgroupLine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    Containerd,
    Podman,
    Crio,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::Podman => "podman",
            Self::Crio => "crio",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// 64 lowercase hex digits.
    pub id: String,
    pub runtime: Runtime,
    pub pod_uid: Option<String>,
}

/// The container of the first line that names one (all lines of one
/// process name the same container); `None` for a process in none.
pub fn find_container(lines: &[CgroupLine<'_>]) -> Option<ContainerInfo> {
    lines.iter().find_map(container_in_line)
}

fn container_in_line(line: &CgroupLine<'_>) -> Option<ContainerInfo> {
    let segments: Vec<&str> = line.segments().collect();
    // The innermost container wins (a container nested in another).
    let (index, id, runtime) = segments.iter().enumerate().rev().find_map(|(i, seg)| {
        let parent = i.checked_sub(1).and_then(|p| segments.get(p)).copied();
        container_segment(seg, parent).map(|(id, rt)| (i, id, rt))
    })?;
    let pod_uid = segments
        .get(..index)
        .unwrap_or_default()
        .iter()
        .rev()
        .find_map(|seg| pod_uid(seg));
    Some(ContainerInfo {
        id: id.to_owned(),
        runtime,
        pod_uid,
    })
}

/// One path segment naming a container, given the segment above it.
fn container_segment<'a>(seg: &'a str, parent: Option<&str>) -> Option<(&'a str, Runtime)> {
    let scoped = |prefix: &str| {
        let rest = seg.strip_prefix(prefix)?;
        let id = rest.strip_suffix(".scope").unwrap_or(rest);
        is_container_id(id).then_some(id)
    };
    if let Some(id) = scoped("docker-") {
        return Some((id, Runtime::Docker));
    }
    if let Some(id) = scoped("cri-containerd-") {
        return Some((id, Runtime::Containerd));
    }
    if let Some(id) = scoped("libpod-") {
        return Some((id, Runtime::Podman));
    }
    if let Some(id) = scoped("crio-") {
        return Some((id, Runtime::Crio));
    }
    if !is_container_id(seg) {
        return None;
    }
    match parent {
        Some("docker") => Some((seg, Runtime::Docker)),
        // cgroupfs driver under Kubernetes: the CRI runtime is containerd
        // on every current distribution (dockershim is gone since 1.24).
        Some(p) if pod_uid(p).is_some() => Some((seg, Runtime::Containerd)),
        _ => None,
    }
}

/// `pod<uid>` or `kubepods[-<qos>]-pod<uid_with_underscores>.slice`.
fn pod_uid(seg: &str) -> Option<String> {
    let raw = match seg.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("-pod").map(|(_, uid)| uid)?,
        None => seg.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A Kubernetes UID: 8-4-4-4-12 hex digits.
fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}
