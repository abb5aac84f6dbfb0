//! `signet-agent run` as a child process on a fresh data dir, attesting
//! with a join token: its RSS is its own, and its `/metrics` say how many
//! SVIDs it holds.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;

use crate::child::{free_port, sibling_binary};

pub struct ChildAgent {
    pub child: Child,
    /// Its Workload API socket.
    pub socket: PathBuf,
    telemetry_port: u16,
}

impl ChildAgent {
    /// Spawns it (does not wait for anything) on `dir`, for the server at
    /// `server_addr` of trust domain `td`.
    pub fn spawn(dir: &Path, server_addr: &str, td: &str, token: &str) -> anyhow::Result<Self> {
        let bin = sibling_binary("signet-agent")?;
        let telemetry_port = free_port()?;
        let socket = dir.join("a.sock");
        std::fs::create_dir_all(dir)?;
        // The bench measures what the agent can serve from one uid: the
        // per-uid call limit would measure the limit instead.
        let config = dir.join("agent.toml");
        std::fs::write(&config, "[workload_api]\nrate_limit = { per_second = 0 }\n")?;
        let child = tokio::process::Command::new(&bin)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--socket-path")
            .arg(&socket)
            .arg("--server-address")
            .arg(server_addr)
            .arg("--trust-domain")
            .arg(td)
            .arg("--insecure-bootstrap")
            .arg("--join-token")
            .arg(token)
            .arg("--telemetry-bind")
            .arg(format!("127.0.0.1:{telemetry_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            child,
            socket,
            telemetry_port,
        })
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the agent exited")
    }

    /// `signet_agent_svids_held` from its `/metrics`.
    pub async fn svids_held(&self) -> anyhow::Result<f64> {
        let text = http_get_metrics(self.telemetry_port).await?;
        metric(&text, "signet_agent_svids_held").context("no signet_agent_svids_held")
    }
}

/// The body (and headers) of `GET /metrics` on 127.0.0.1:`port`.
pub async fn http_get_metrics(port: u16) -> anyhow::Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    tcp.read_to_string(&mut body).await?;
    Ok(body)
}

/// The value of the first sample of `name` (with or without labels) in a
/// Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let value = match rest.chars().next()? {
            ' ' => rest,
            '{' => rest.split_once('}')?.1,
            _ => return None,
        };
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn a_sample_is_found_with_or_without_labels_and_not_by_prefix() {
        let text = "# HELP x\nfoo_total 3\nfoo 1.5\nbar{a=\"b\"} 7\n";
        assert_eq!(metric(text, "foo"), Some(1.5));
        assert_eq!(metric(text, "bar"), Some(7.0));
        assert_eq!(metric(text, "baz"), None);
    }
}
