//! SPIRE (the version `scripts/build-spire` pins), `spire-server` and
//! `spire-agent` as child processes on loopback, in the settings that give
//! it its best case here:
//! - server: SQLite, join_token, the events-based entry cache polled every
//!   second (`cache_reload_interval`), rate limits off, log level WARN;
//! - agent: `sync_interval` 1 s (its default is 5 s), an SVID cache big
//!   enough for every entry (`x509_svid_cache_max_size`), keys in memory,
//!   log level WARN.
//!
//! Entries are made with SPIRE's own CLI; a figure that times propagation
//! starts when the CLI has returned, as Signet's starts when its Admin API
//! call has.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use signet_tests::process::Proc;
use signet_tests::spire::{spire_bins, SpireServer};
use tempfile::TempDir;
use tokio::time::Instant;

use super::system::{
    until_all_hold, ColdStart, HoldsSvids, System, COLD_START_PATIENCE, UNSERVED_SELECTOR,
};
use crate::child::{free_port, rss};
use crate::child_agent::{http_get_metrics, metric};
use crate::env::wait_for_svid;

/// How often the agent syncs with the server and the server reloads its
/// entry cache from the events: one place, `BENCHMARKS.md` quotes it.
pub const SYNC_INTERVAL: &str = "1s";

const TRUST_DOMAIN: &str = "spire.test";

/// What SPIRE's agent exposes as the number of X509-SVIDs it holds.
const SVIDS_HELD: &str = "spire_agent_lru_cache_svid_map_size";

pub struct Spire {
    server: SpireServer,
    agent: SpireAgent,
    workload_id: String,
    /// `unix:uid:<n>`: SPIRE's CLI takes Signet's form.
    selector: String,
}

/// One `spire-agent run` on its own dir.
pub struct SpireAgent {
    proc: Proc,
    pub socket: PathBuf,
    pub id: String,
    telemetry_port: u16,
    _dir: TempDir,
}

impl Spire {
    /// A server and an agent, and an entry for this process's workloads
    /// (`selector`, Signet's `unix:uid:N` form), served before this
    /// returns.
    pub async fn start(selector: &str) -> anyhow::Result<Self> {
        // Builds SPIRE on a machine that has not yet (minutes, once).
        tokio::task::spawn_blocking(spire_bins).await?;
        let server = SpireServer::start(TRUST_DOMAIN, &server_settings()).await;
        let token = cli(&server, &["token", "generate"]).await?;
        let token = token
            .lines()
            .find_map(|l| l.strip_prefix("Token: "))
            .context("token generate printed no token")?
            .trim()
            .to_owned();
        let bundle = cli(&server, &["bundle", "show", "-format", "pem"]).await?;
        let agent = SpireAgent::spawn(&server, &token, &bundle)?;
        let spire = Self {
            workload_id: server.id("/bench/workload"),
            selector: selector.to_owned(),
            server,
            agent,
        };
        spire.create_entry(&spire.workload_id).await?;
        wait_for_svid(
            &spire.agent.socket,
            &spire.workload_id,
            Duration::from_secs(60),
        )
        .await
        .with_context(|| format!("spire-agent's log:\n{}", spire.agent.proc.log_text()))?;
        Ok(spire)
    }

    async fn create_entries(&self, entries: Vec<serde_json::Value>) -> anyhow::Result<()> {
        let file = self.server.dir.path().join("entries.json");
        let count = entries.len();
        std::fs::write(&file, serde_json::json!({ "entries": entries }).to_string())?;
        let file = file.to_str().context("non-UTF-8 temp path")?.to_owned();
        let out = cli(
            &self.server,
            &["entry", "create", "-output", "json", "-data", &file],
        )
        .await?;
        let json: serde_json::Value = serde_json::from_str(&out).context("entry create JSON")?;
        let results = json["results"].as_array().context("no results")?;
        let refused = results
            .iter()
            .filter(|r| r["status"]["code"].as_i64().unwrap_or(0) != 0)
            .count();
        anyhow::ensure!(
            refused == 0 && results.len() == count,
            "SPIRE created {} of {count} entries ({refused} refused)",
            results.len() - refused
        );
        Ok(())
    }
}

fn server_settings() -> String {
    format!(
        r#"  log_level = "WARN"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
  experimental {{
    events_based_cache = true
    cache_reload_interval = "{SYNC_INTERVAL}"
  }}
  ratelimit {{
    attestation = false
    signing = false
  }}"#
    )
}

impl SpireAgent {
    /// Spawns an agent attesting with `token`, trusting `bundle_pem`; does
    /// not wait for it.
    fn spawn(server: &SpireServer, token: &str, bundle_pem: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("spa").tempdir()?;
        let d = dir.path().display();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, bundle_pem)?;
        let socket = dir.path().join("api.sock");
        let telemetry_port = free_port()?;
        let config = format!(
            r#"agent {{
  data_dir = "{d}/data"
  log_level = "WARN"
  server_address = "127.0.0.1"
  server_port = "{port}"
  socket_path = "{socket}"
  trust_bundle_path = "{bundle}"
  trust_domain = "{td}"
  join_token = "{token}"
  x509_svid_cache_max_size = 1000000
  experimental {{
    sync_interval = "{SYNC_INTERVAL}"
  }}
}}

plugins {{
  NodeAttestor "join_token" {{ plugin_data {{}} }}
  KeyManager "memory" {{ plugin_data {{}} }}
  WorkloadAttestor "unix" {{ plugin_data {{}} }}
}}

telemetry {{
  Prometheus {{
    host = "127.0.0.1"
    port = {telemetry_port}
  }}
}}
"#,
            port = server.port,
            socket = socket.display(),
            bundle = bundle.display(),
            td = server.trust_domain,
        );
        let config_path = dir.path().join("agent.conf");
        std::fs::write(&config_path, config)?;
        let mut cmd = Command::new(&spire_bins().agent);
        cmd.arg("run").arg("-config").arg(&config_path);
        Ok(Self {
            proc: Proc::spawn("spire-agent", cmd, dir.path()),
            socket,
            id: server.id(&format!("/spire/agent/join_token/{token}")),
            telemetry_port,
            _dir: dir,
        })
    }
}

impl HoldsSvids for SpireAgent {
    /// From its Prometheus metrics (0 before it reports any).
    async fn svids_held(&self) -> anyhow::Result<f64> {
        let text = http_get_metrics(self.telemetry_port).await?;
        Ok(metric(&text, SVIDS_HELD).unwrap_or(0.0))
    }
}

/// `spire-server <args> -socketPath <the server's>`; its stdout, or an
/// error with its output.
async fn cli(server: &SpireServer, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(&spire_bins().server)
        .args(args)
        .arg("-socketPath")
        .arg(&server.socket_path)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "spire-server {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl System for Spire {
    fn name(&self) -> &'static str {
        "spire"
    }

    fn socket(&self) -> &Path {
        &self.agent.socket
    }

    fn workload_id(&self) -> &str {
        &self.workload_id
    }

    fn spiffe_id(&self, path: &str) -> String {
        self.server.id(path)
    }

    async fn create_entry(&self, spiffe_id: &str) -> anyhow::Result<String> {
        let out = cli(
            &self.server,
            &[
                "entry",
                "create",
                "-output",
                "json",
                "-parentID",
                &self.agent.id,
                "-spiffeID",
                spiffe_id,
                "-selector",
                &self.selector,
            ],
        )
        .await?;
        let json: serde_json::Value = serde_json::from_str(&out).context("entry create JSON")?;
        let result = &json["results"][0];
        anyhow::ensure!(
            result["status"]["code"].as_i64().unwrap_or(0) == 0,
            "entry create {spiffe_id} refused: {out}"
        );
        Ok(result["entry"]["id"]
            .as_str()
            .context("entry create printed no id")?
            .to_owned())
    }

    async fn delete_entry(&self, id: &str) -> anyhow::Result<()> {
        cli(&self.server, &["entry", "delete", "-entryID", id]).await?;
        Ok(())
    }

    async fn cold_start(
        &self,
        _dir: &Path,
        agents: usize,
        per_agent: usize,
    ) -> anyhow::Result<ColdStart> {
        let bundle = cli(&self.server, &["bundle", "show", "-format", "pem"]).await?;
        let mut tokens = Vec::with_capacity(agents);
        for a in 0..agents {
            let token = cli(&self.server, &["token", "generate"]).await?;
            let token = token
                .lines()
                .find_map(|l| l.strip_prefix("Token: "))
                .context("token generate printed no token")?
                .trim()
                .to_owned();
            let parent = self.server.id(&format!("/spire/agent/join_token/{token}"));
            let entries = (0..per_agent)
                .map(|i| {
                    serde_json::json!({
                        "spiffe_id": self.server.id(&format!("/cold/{a}/{i}")),
                        "parent_id": parent,
                        "selectors": [{"type": UNSERVED_SELECTOR.0, "value": UNSERVED_SELECTOR.1}],
                    })
                })
                .collect();
            self.create_entries(entries).await?;
            tokens.push(token);
        }
        let started = Instant::now();
        let children = tokens
            .iter()
            .map(|t| SpireAgent::spawn(&self.server, t, &bundle))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Err(short) = until_all_hold(&children, per_agent, started).await {
            let log = short.first().map(|a| a.proc.log_text()).unwrap_or_default();
            let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            anyhow::bail!(
                "{} of {agents} SPIRE agents did not hold {per_agent} SVIDs within {COLD_START_PATIENCE:?}; last log lines: {tail}",
                short.len()
            );
        }
        let took = started.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_mb = children
            .iter()
            .map(|c| Ok(rss(c.proc.pid().context("spire-agent exited")?)?.now_mb))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(ColdStart { took, rss_mb })
    }
}

/// `vs_spire_server_rss_1k_agents` on SPIRE: a fresh server, `agents`
/// agents simulated by `spire-agent-sim`; the server's RSS in MB.
pub async fn server_rss(dir: &Path, agents: usize) -> anyhow::Result<f64> {
    let sim = sim_binary().await?;
    let server = SpireServer::start(TRUST_DOMAIN, &server_settings()).await;
    let bundle = dir.join("spire-rss-bundle.pem");
    std::fs::write(
        &bundle,
        cli(&server, &["bundle", "show", "-format", "pem"]).await?,
    )?;
    let pid = server
        .proc
        .as_ref()
        .and_then(Proc::pid)
        .context("spire-server exited")?;
    super::server_rss::spire(
        &sim,
        pid,
        &format!("127.0.0.1:{}", server.port),
        &server.socket_path,
        TRUST_DOMAIN,
        &bundle,
        agents,
    )
    .await
}

/// `spire-agent-sim` (bench/go), built once into the cache by
/// `scripts/build-go-clients spire-agent-sim`, which prints its directory.
async fn sim_binary() -> anyhow::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-go-clients");
    let out = tokio::process::Command::new(&script)
        .arg("spire-agent-sim")
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} spire-agent-sim failed",
        script.display()
    );
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("spire-agent-sim");
    anyhow::ensure!(bin.is_file(), "{} is missing", bin.display());
    Ok(bin)
}
