//! A real `signet-agent` attested to a `TestServer` with a join token,
//! serving the Workload API on a private socket.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;

use crate::bins::bins;
use crate::process::Proc;
use crate::server::TestServer;
use crate::wait;

pub struct TestAgent {
    /// First: fields drop in order, so the process is killed (and its log
    /// read on a panic) before its temp dir is deleted.
    pub proc: Option<Proc>,
    pub dir: TempDir,
    pub data_dir: PathBuf,
    pub socket_path: PathBuf,
    pub server_addr: String,
    pub trust_domain: String,
    options: AgentOptions,
    /// `spiffe://<td>/signet/agent/join_token/<token>` of the first attestation.
    pub spiffe_id: String,
}

/// How a test agent is run beyond its paths and server.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Extra `run` flags (e.g. `--config F`). Unless they pin a bundle with
    /// `--trust-bundle`, the agent trusts the server on first use.
    pub extra: Vec<String>,
    /// A command the agent runs under, e.g. `prlimit --nofile=1024:1024 --`.
    /// It must exec the agent, not fork it: the test kills the pid it started.
    pub prefix: Vec<String>,
    /// Environment variables the agent gets.
    pub env: Vec<(String, String)>,
    /// `--server-address` when not the server's own (an HA group: `A,B`).
    pub server_address: Option<String>,
}

impl TestAgent {
    /// Generates a join token, starts the agent with it and waits until its
    /// Workload API answers.
    pub async fn start(server: &TestServer) -> TestAgent {
        let token = server.join_token();
        let mut agent = Self::spawn(server, Some(&token));
        agent.wait_healthy().await;
        agent
    }

    /// Starts the agent without waiting; `token` None restarts from disk.
    pub fn spawn(server: &TestServer, token: Option<&str>) -> TestAgent {
        Self::spawn_with(server, token, &[])
    }

    /// Like [`spawn`](Self::spawn) with extra `run` flags (e.g. `--config F`).
    pub fn spawn_with(server: &TestServer, token: Option<&str>, extra: &[&str]) -> TestAgent {
        Self::spawn_under(&[], server, token, extra)
    }

    /// Like [`spawn_with`](Self::spawn_with), the agent run by `prefix`
    /// (e.g. `["prlimit", "--nofile=1024:1024", "--"]`).
    pub fn spawn_under(
        prefix: &[&str],
        server: &TestServer,
        token: Option<&str>,
        extra: &[&str],
    ) -> TestAgent {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        let options = AgentOptions {
            extra: strings(extra),
            prefix: strings(prefix),
            env: Vec::new(),
            server_address: None,
        };
        Self::spawn_opts(server, token, options)
    }

    /// The agent run as `options` say.
    pub fn spawn_opts(
        server: &TestServer,
        token: Option<&str>,
        options: AgentOptions,
    ) -> TestAgent {
        let dir = tempfile::Builder::new()
            .prefix("sga")
            .tempdir()
            .expect("tempdir");
        let mut agent = TestAgent {
            data_dir: dir.path().join("data"),
            socket_path: dir.path().join("api.sock"),
            server_addr: options
                .server_address
                .clone()
                .unwrap_or_else(|| server.addr.clone()),
            trust_domain: server.trust_domain.clone(),
            dir,
            proc: None,
            options,
            spiffe_id: token
                .map(|t| server.id(&format!("/signet/agent/join_token/{t}")))
                .unwrap_or_default(),
        };
        agent.launch(token);
        agent
    }

    fn launch(&mut self, token: Option<&str>) {
        let mut cmd = match self.options.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bins().agent);
                c
            }
            None => Command::new(&bins().agent),
        };
        cmd.arg("run")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--socket-path")
            .arg(&self.socket_path)
            .arg("--server-address")
            .arg(&self.server_addr)
            .arg("--trust-domain")
            .arg(&self.trust_domain);
        if !self.options.extra.iter().any(|a| a == "--trust-bundle") {
            cmd.arg("--insecure-bootstrap");
        }
        if let Some(t) = token {
            cmd.arg("--join-token").arg(t);
        }
        cmd.args(&self.options.extra);
        cmd.envs(self.options.env.iter().map(|(k, v)| (k, v)));
        self.proc = Some(Proc::spawn("signet-agent", cmd, self.dir.path()));
    }

    pub async fn wait_healthy(&mut self) {
        let this = &*self;
        wait::until(
            "agent healthcheck",
            Duration::from_secs(30),
            || async move { this.cli(&["healthcheck"]).status.success().then_some(()) },
        )
        .await;
    }

    /// Graceful stop and start again from the data dir, without a token.
    pub async fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
        }
        self.launch(None);
        self.wait_healthy().await;
    }

    /// Graceful stop (SIGTERM), no restart.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
        }
    }

    /// kill -9: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// The environment of the next start.
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.options.env = env;
    }

    /// Starts the agent again from its data dir (no token), without waiting.
    pub fn respawn(&mut self) {
        self.launch(None);
    }

    /// Runs `signet-agent <args> --socket-path <ours>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&bins().agent)
            .args(args)
            .arg("--socket-path")
            .arg(&self.socket_path)
            .output()
            .expect("run signet-agent cli")
    }

    /// `unix:///...`, as SPIFFE clients take it.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket_path.display())
    }

    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// The agent's own SVID chain (DER) and PKCS#8 key, from its data dir:
    /// what a thief who read them would hold.
    pub fn identity(&self) -> (Vec<Vec<u8>>, Vec<u8>) {
        let pem = std::fs::read(self.data_dir.join("agent_svid.pem")).expect("agent_svid.pem");
        let chain = signet_core::pem::decode_certs(&pem).expect("SVID PEM");
        let pem = std::fs::read(self.data_dir.join("agent_key.pem")).expect("agent_key.pem");
        let key = signet_core::pem::decode_private_key(&pem).expect("key PEM");
        (chain, key)
    }

    /// Where the agent's `/live`, `/ready` and `/metrics` answer (run with
    /// `--telemetry-bind 127.0.0.1:0`).
    pub fn telemetry_addr(&self) -> String {
        crate::logged_addr(&self.log_text(), "serving /live, /ready and /metrics addr=")
            .expect("the agent logs its telemetry address")
    }

    /// Lets other users reach the socket (the test dir is 0700).
    pub fn open_to_all_users(&self) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the agent's dir");
    }
}
