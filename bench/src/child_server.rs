//! `signet-server run` as a child process (its RSS its own, and it can be
//! killed with SIGKILL): on a data dir, a fixed port, its own admin socket
//! and telemetry port, on SQLite or a PostgreSQL database shared with others.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use signet_core::TrustDomain;
use signet_proto::admin::HealthRequest;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::child::{free_port, sibling_binary};
use crate::env::{Admin, NodeApi};

pub struct ChildServer {
    pub child: Option<Child>,
    pub api: NodeApi,
    /// Where `/metrics` answers.
    pub telemetry: String,
    dir: PathBuf,
    datastore: Option<String>,
}

impl ChildServer {
    /// Starts it on `dir` (and `datastore`, else SQLite there) and waits
    /// until its Admin API says it is serving.
    pub async fn start(dir: &Path, datastore: Option<&str>) -> anyhow::Result<Self> {
        let td = TrustDomain::new("example.org")?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let telemetry = format!("127.0.0.1:{}", free_port()?);
        std::fs::create_dir_all(dir)?;
        // A thousand agents from one loopback address: above the default
        // cap of connections and rate of attestations per source address.
        std::fs::write(
            dir.join("server.toml"),
            "[node_api]\nmax_connections_per_address = 16384\n\n[rate_limit]\nattestation = { per_second = 0 }\nx509_signing = { per_second = 0 }\njwt_minting = { per_second = 0 }\n\n[anomaly]\nlearning_period = \"0s\"\n",
        )?;
        let mut server = Self {
            child: None,
            api: NodeApi {
                admin: placeholder_admin()?,
                td,
                addr,
            },
            telemetry,
            dir: dir.to_path_buf(),
            datastore: datastore.map(str::to_owned),
        };
        server.launch().await?;
        Ok(server)
    }

    /// Starts it again (after [`kill9`](Self::kill9)) on the same port,
    /// data dir and datastore.
    pub async fn launch(&mut self) -> anyhow::Result<()> {
        let bin = sibling_binary("signet-server")?;
        let socket = self.dir.join("admin.sock");
        let _ = std::fs::remove_file(&socket);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("run")
            .arg("--config")
            .arg(self.dir.join("server.toml"))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--trust-domain")
            .arg(self.api.td.to_string())
            .arg("--bind")
            .arg(&self.api.addr)
            .arg("--admin-socket")
            .arg(&socket)
            .arg("--telemetry-bind")
            .arg(&self.telemetry);
        if let Some(url) = &self.datastore {
            cmd.arg("--datastore").arg(url);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.child = Some(child);
        self.api.admin = serving_admin(&socket).await?;
        Ok(())
    }

    /// SIGKILL: no chance to close anything.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// SIGTERM and wait for it to exit (a graceful stop), then start it
    /// again as [`launch`](Self::launch) does.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().context("the server exited")?;
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
            tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .context("the server did not stop within 30 s of SIGTERM")??;
        }
        self.launch().await
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .as_ref()
            .and_then(Child::id)
            .context("the server exited")
    }
}

/// A client that is replaced before use (the socket is not there yet).
fn placeholder_admin() -> anyhow::Result<Admin> {
    let channel = tonic::transport::Endpoint::from_static("http://[::]:1").connect_lazy();
    Ok(Admin::new(channel))
}

async fn serving_admin(socket: &Path) -> anyhow::Result<Admin> {
    let patience = Duration::from_secs(30);
    let started = Instant::now();
    loop {
        if let Ok(mut admin) = signet_server::cli::client::connect(socket).await {
            if let Ok(r) = admin.health(HealthRequest {}).await {
                if r.into_inner().serving {
                    return Ok(admin);
                }
            }
        }
        anyhow::ensure!(
            started.elapsed() < patience,
            "the server did not serve within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
