//! The process on the other end of a Workload API connection, pinned when
//! the connection is accepted. The kernel names the connecting process by
//! pid, and a pid can be reused: a caller that exits lets another process,
//! perhaps a root service, take its pid, and attesting that pid would hand
//! the service's identity to the first caller's connection. A process can
//! also connect, pass the socket on (fork, `SCM_RIGHTS`) and exec another
//! binary. So at accept we take a pidfd of the connecting process
//! (`SO_PEERPIDFD`, Linux 6.5+; otherwise its start time) and its
//! executable's (device, inode), and every attestation on the connection
//! is refused unless that same process, running that same executable, is
//! still there once its selectors were read.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerPidfd};

use super::WorkloadAttestError;

/// The connecting process as it was at accept.
#[derive(Debug)]
pub struct PeerPin {
    pid: Option<i32>,
    /// Readable once the process has exited; `None` on kernels without
    /// `SO_PEERPIDFD`.
    pidfd: Option<OwnedFd>,
    /// From /proc/<pid>/stat at accept: the fallback without a pidfd.
    start_time: Option<u64>,
    /// (device, inode) of /proc/<pid>/exe at accept; `None` where it cannot
    /// be read (another user's process, an agent without CAP_SYS_PTRACE).
    exe: Option<(u64, u64)>,
    procfs_root: PathBuf,
}

impl PeerPin {
    /// Pins the process that connected `socket`, whose pid the kernel gave
    /// as `pid`.
    pub fn at_accept(socket: &impl AsFd, pid: Option<i32>, procfs_root: &Path) -> Self {
        let pidfd = match getsockopt(socket, PeerPidfd) {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::debug!(error = %e, "no SO_PEERPIDFD; pinning the caller by start time");
                None
            }
        };
        let proc_dir = pid.map(|p| procfs_root.join(p.to_string()));
        let start_time = match (&proc_dir, pid) {
            (Some(dir), Some(p)) if pidfd.is_none() => super::unix::start_time(dir, p).ok(),
            _ => None,
        };
        Self {
            pid,
            pidfd,
            start_time,
            exe: proc_dir.as_deref().and_then(executable),
            procfs_root: procfs_root.to_path_buf(),
        }
    }

    /// The pid the kernel gave for the connecting process.
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// Whether `pid` still names the process that connected, running the
    /// executable it ran then. Called after its selectors were read: if it
    /// is alive now it was alive throughout, so what was read was its own.
    pub fn verify(&self) -> Result<(), WorkloadAttestError> {
        let pid = self.pid.ok_or(WorkloadAttestError::NoPid)?;
        let proc_dir = self.procfs_root.join(pid.to_string());
        match &self.pidfd {
            Some(fd) => {
                if has_exited(fd) {
                    return Err(WorkloadAttestError::CallerExited(pid));
                }
            }
            None => {
                let now = super::unix::start_time(&proc_dir, pid)
                    .map_err(|_| WorkloadAttestError::CallerExited(pid))?;
                if self.start_time != Some(now) {
                    return Err(WorkloadAttestError::CallerExited(pid));
                }
            }
        }
        if executable(&proc_dir) != self.exe {
            return Err(WorkloadAttestError::ExecutableChanged(pid));
        }
        Ok(())
    }
}

/// A pidfd polls readable once its process has exited.
fn has_exited(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => false,
        Ok(_) => true,
        // Cannot tell: treat as gone, never as the same process.
        Err(_) => true,
    }
}

/// The (device, inode) of the executable, following /proc/<pid>/exe.
pub(super) fn executable(proc_dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(proc_dir.join("exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use tokio::net::{UnixListener, UnixStream};

    use super::*;

    /// A child that connects to `path` and lingers until killed: its socket
    /// end stays open in us after it is gone.
    async fn connect_from_child(path: &Path) -> (std::process::Child, UnixStream) {
        let listener = UnixListener::bind(path).unwrap();
        let child = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\nsys.stdout.write('up\\n');sys.stdout.flush()\ntime.sleep(60)",
                path.display().to_string()
            ))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (child, server)
    }

    #[tokio::test]
    async fn the_connecting_process_passes_while_alive_and_fails_once_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, server) = connect_from_child(&dir.path().join("s")).await;
        let pid = server.peer_cred().unwrap().pid();
        assert_eq!(pid, Some(child.id() as i32));
        let pin = PeerPin::at_accept(&server, pid, Path::new("/proc"));
        assert!(pin.pidfd.is_some(), "this kernel has SO_PEERPIDFD");
        pin.verify().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            pin.verify(),
            Err(WorkloadAttestError::CallerExited(child.id() as i32))
        );
    }

    #[tokio::test]
    async fn without_a_pidfd_the_start_time_pins_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, server) = connect_from_child(&dir.path().join("s")).await;
        let pid = server.peer_cred().unwrap().pid();
        let mut pin = PeerPin::at_accept(&server, pid, Path::new("/proc"));
        pin.pidfd = None;
        pin.start_time = super::super::unix::start_time(
            &Path::new("/proc").join(child.id().to_string()),
            child.id() as i32,
        )
        .ok();
        pin.verify().unwrap();
        // Another process under that pid started later.
        pin.start_time = pin.start_time.map(|t| t - 1);
        assert!(matches!(
            pin.verify(),
            Err(WorkloadAttestError::CallerExited(_))
        ));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn another_executable_than_at_accept_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, server) = connect_from_child(&dir.path().join("s")).await;
        let pid = server.peer_cred().unwrap().pid();
        let mut pin = PeerPin::at_accept(&server, pid, Path::new("/proc"));
        assert!(pin.exe.is_some(), "root reads its child's exe");
        pin.exe = pin.exe.map(|(dev, ino)| (dev, ino + 1));
        assert_eq!(
            pin.verify(),
            Err(WorkloadAttestError::ExecutableChanged(child.id() as i32))
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
