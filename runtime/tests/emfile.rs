//! An accept loop in a process out of descriptors pauses instead of
//! spinning (an agent once spun at 90% CPU on EMFILE), and takes the waiting
//! connections once descriptors are free again. A test binary of its own:
//! it lowers its own open-file limit and fills its descriptor table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use nix::sys::resource::{getrlimit, getrusage, setrlimit, Resource, UsageWho};

fn cpu_time() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
    };
    t(u.user_time()) + t(u.system_time())
}

#[test]
fn accepts_pause_while_descriptors_are_out_and_resume_when_freed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        // Three clients wait in the backlog, from a process of their own.
        let mut clients = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import socket,sys,time\nss=[socket.socket(socket.AF_UNIX) for _ in range(3)]\n[s.connect({:?}) for s in ss]\nprint('up',flush=True)\ntime.sleep(30)",
                path.display().to_string()
            ))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut up = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(clients.stdout.as_mut().unwrap()),
            &mut up,
        )
        .unwrap();
        assert_eq!(up.trim(), "up");

        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, 128, hard).unwrap();
        let mut filler = Vec::new();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => filler.push(f),
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EMFILE as i32) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let mut incoming = Box::pin(signet_runtime::conn::accepted(listener, "test"));
        let cpu = cpu_time();
        let waited = tokio::time::timeout(Duration::from_secs(1), incoming.next()).await;
        let spent = cpu_time() - cpu;
        assert!(waited.is_err(), "accepted with no descriptor free");
        assert!(spent < Duration::from_millis(200), "spun: {spent:?} of CPU in 1 s");

        filler.truncate(filler.len() - 16);
        let started = Instant::now();
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(3), incoming.next())
                .await
                .expect("accepted once descriptors were free")
                .expect("a connection");
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        clients.kill().unwrap();
        clients.wait().unwrap();
    });
}
