//! `/proc/<pid>/cgroup`, the one file the container and systemd attestors
//! read: one line per hierarchy, `ID:CONTROLLERS:PATH` (cgroup v1) or the
//! single `0::PATH` line of the unified hierarchy (v2).

use std::path::Path;

use super::unix::{guard_pid_reuse, read_proc};
use super::WorkloadAttestError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine<'a> {
    pub hierarchy: &'a str,
    /// Comma-separated controllers; empty for v2, `name=systemd` for the
    /// systemd v1 hierarchy.
    pub controllers: &'a str,
    pub path: &'a str,
}

impl CgroupLine<'_> {
    /// The path's non-empty segments.
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.path.split('/').filter(|s| !s.is_empty())
    }
}

/// Every well-formed line; malformed ones are skipped.
pub fn parse(text: &str) -> Vec<CgroupLine<'_>> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let hierarchy = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            path.starts_with('/').then_some(CgroupLine {
                hierarchy,
                controllers,
                path,
            })
        })
        .collect()
}

/// Reads the caller's cgroup file between two reads of its start time, so a
/// pid reused meanwhile fails rather than lending another process's cgroup.
pub fn read_for_pid(procfs_root: &Path, pid: i32) -> Result<String, WorkloadAttestError> {
    let proc_dir = procfs_root.join(pid.to_string());
    guard_pid_reuse(&proc_dir, pid, || read_proc(&proc_dir.join("cgroup"), pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_lines_split_on_the_first_two_colons() {
        let lines = parse("1:name=systemd:/a/b\n0::/x:y\ngarbage\n2:cpu:relative\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].controllers, "name=systemd");
        assert_eq!(lines[0].segments().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(lines[1].hierarchy, "0");
        assert_eq!(lines[1].path, "/x:y");
    }
}
