//! Shared fixtures for the end-to-end tests: the real `signet-server` and
//! `signet-agent` binaries started as child processes on temp dirs, free
//! ports and private sockets, plus raw clients for what the `spiffe` crate
//! cannot show (status codes, the Node API's authorization).
//!
//! Fixtures live here once; test files only say what a user would check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod bins;
pub mod checks;
pub mod containers;
pub mod federation;
pub mod go_clients;
pub mod ha;
pub mod http;
pub mod netns;
pub mod node;
pub mod peer;
pub mod postgres;
pub mod process;
pub mod server;
pub mod softhsm;
pub mod spiffe_tls;
pub mod spire;
pub mod tpm;
pub mod wait;
pub mod workload;
pub mod x509pop;

pub use agent::{AgentOptions, TestAgent};
pub use ha::HaGroup;
pub use server::TestServer;

/// A loopback port free right now, for daemons whose configuration must
/// name their port up front (SPIRE, PostgreSQL, an OIDC issuer URL).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The uid of the test process: entries for "the current user" use it.
pub fn current_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// A unix:uid selector matching the test process.
pub fn my_uid_selector() -> String {
    format!("unix:uid:{}", current_uid())
}

/// The address the last line of `log` holding `marker` names right after
/// it (a daemon asked for port 0 logs the one it got): up to a comma,
/// a space or the line's end.
pub fn logged_addr(log: &str, marker: &str) -> Option<String> {
    let line = log.lines().rev().find(|l| l.contains(marker))?;
    let (_, rest) = line.split_once(marker)?;
    let addr: String = rest
        .chars()
        .take_while(|c| !matches!(c, ',' | ' '))
        .collect();
    (!addr.is_empty()).then_some(addr)
}

/// A server and one agent attested to it, both on their defaults except for
/// paths and ports; `server_flags` are extra `signet-server run` flags.
pub async fn start_pair(server_flags: &[&str]) -> (TestServer, TestAgent) {
    let server = TestServer::start_with(server_flags).await;
    let agent = TestAgent::start(&server).await;
    (server, agent)
}
