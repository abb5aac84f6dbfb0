//! The connect-then-hand-over attacks: this process connects (so the
//! kernel names *it* as the peer), gives the socket to a child, lets the
//! child make a first call (so the agent has accepted and pinned the
//! connection), then exits, freeing its pid for another process, or execs
//! another binary under the same pid. The child then calls again on the
//! same connection once the test says go.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use super::{report, workload};

pub fn hand_over(socket: &Path, out: &Path, go: &Path, exec: &[String]) -> ExitCode {
    let stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    let me = std::env::current_exe().expect("current_exe");
    // The child's stdin is the socket, as after fork or SCM_RIGHTS.
    let mut child = Command::new(me);
    child
        .arg("relay-client")
        .arg("--out")
        .arg(out)
        .arg("--go")
        .arg(go)
        .stdin(Stdio::from(OwnedFd::from(stream)));
    // It outlives us on purpose (init reaps it): that is the attack.
    #[allow(clippy::zombie_processes)]
    let _child = child.spawn().expect("spawn relay-client");
    if !report::wait_for_file(&first_path(out), Duration::from_secs(20)) {
        eprintln!("the child's first call never finished");
        return ExitCode::FAILURE;
    }
    match exec.split_first() {
        Some((prog, args)) => {
            let err = Command::new(prog).args(args).exec();
            eprintln!("exec {prog}: {err}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

pub fn first_path(out: &Path) -> std::path::PathBuf {
    out.with_extension("first")
}

pub async fn relay_client(out: &Path, go: &Path) {
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .expect("stdin fd");
    let std_stream = std::os::unix::net::UnixStream::from(fd);
    std_stream.set_nonblocking(true).expect("nonblocking");
    let stream = tokio::net::UnixStream::from_std(std_stream).expect("tokio stream");
    let mut client = workload::client_over(stream).await;
    let first = workload::fetch_once(&mut client).await;
    report::write(&first_path(out), &report::outcome(first));
    let go = go.to_path_buf();
    let ready =
        tokio::task::spawn_blocking(move || report::wait_for_file(&go, Duration::from_secs(60)))
            .await
            .unwrap_or(false);
    let second = if ready {
        workload::fetch_once(&mut client).await
    } else {
        Err(tonic::Status::deadline_exceeded("the test never said go"))
    };
    report::write(out, &report::outcome(second));
}
