//! Signet binaries run as child processes, so a figure can read their memory
//! alone: where the binaries are, a free port, and a process's RSS.

use std::path::PathBuf;

use anyhow::Context;

/// The `name` binary next to this one. Build it first (`cargo build
/// --release -p signet-server -p signet-agent`): building it from here made
/// cargo rebuild the bench each run (features unify differently), which broke
/// the time limit.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("bench binary has no directory")?;
    let bin = dir.join(name);
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p {name}` first",
        bin.display()
    );
    Ok(bin)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Resident memory now (`VmRSS`) and at its peak (`VmHWM`), in MB; `now`
/// split into the heap and other anonymous memory (`RssAnon`) and mapped
/// files, mostly the binary's own pages (`RssFile`).
pub struct Rss {
    pub now_mb: f64,
    pub peak_mb: f64,
    pub anon_mb: f64,
    pub file_mb: f64,
}

pub fn rss(pid: u32) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let mb = |key: &str| -> anyhow::Result<f64> {
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .with_context(|| format!("no {key} in /proc/{pid}/status"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kb / 1024.0)
    };
    Ok(Rss {
        now_mb: mb("VmRSS:")?,
        peak_mb: mb("VmHWM:")?,
        anon_mb: mb("RssAnon:")?,
        file_mb: mb("RssFile:")?,
    })
}
