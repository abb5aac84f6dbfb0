//! Locates the `signet-server` and `signet-agent` binaries, building them once
//! per test process: a test crate cannot name another package's binaries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Bins {
    pub server: PathBuf,
    pub agent: PathBuf,
    /// `signet-test-peer`, the misbehaving client of the security tests.
    pub peer: PathBuf,
}

/// target/<profile>/, derived from this test binary (target/<profile>/deps/x).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let dir = profile_dir();
        // Always ask cargo: it is a no-op when the binaries are fresh, and a
        // stale binary would test yesterday's code.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target_dir = dir.parent().expect("target dir").to_path_buf();
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "signet-server",
            "-p",
            "signet-agent",
            "-p",
            "signet-tests",
            "--bins",
            // As the workspace's test build has it (tests/Cargo.toml).
            "--features",
            "signet-agent/tpm",
        ])
        .env("CARGO_TARGET_DIR", &target_dir);
        if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
        Bins {
            server: dir.join("signet-server"),
            agent: dir.join("signet-agent"),
            peer: dir.join("signet-test-peer"),
        }
    })
}
