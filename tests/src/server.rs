//! A real `signet-server` on a temp data dir, a free port and a private
//! admin socket, driven through its own CLI. Its datastore is SQLite in the
//! data dir, or, with `SIGNET_TEST_DATASTORE=postgres`, a fresh database on
//! the run's PostgreSQL cluster (the one switch that runs the whole suite on
//! PostgreSQL); [`TestServer::start_on`] puts several servers on one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;

use crate::bins::bins;
use crate::process::Proc;
use crate::wait;

pub struct TestServer {
    /// First: fields drop in order, so the process is killed (and its log
    /// read on a panic) before its temp dir is deleted.
    pub proc: Option<Proc>,
    pub dir: TempDir,
    pub data_dir: PathBuf,
    pub admin_socket: PathBuf,
    pub addr: String,
    pub trust_domain: String,
    extra_args: Vec<String>,
    /// A command the server runs under, e.g. `prlimit --nofile=1024:1024`.
    prefix: Vec<String>,
    /// `--datastore`, when not the data dir's SQLite file.
    pub datastore: Option<String>,
}

/// The switch: `SIGNET_TEST_DATASTORE=postgres` runs every test server on
/// PostgreSQL.
pub fn default_datastore() -> Option<String> {
    match std::env::var("SIGNET_TEST_DATASTORE").as_deref() {
        Ok("postgres") => Some(crate::postgres::fresh_database()),
        Ok("sqlite") | Ok("") | Err(_) => None,
        Ok(other) => panic!("SIGNET_TEST_DATASTORE={other}: expected sqlite or postgres"),
    }
}

impl TestServer {
    /// Starts a server on defaults except for paths and port.
    pub async fn start() -> TestServer {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra `run` flags (e.g. `--default-x509-svid-ttl 6s`).
    pub async fn start_with(extra: &[&str]) -> TestServer {
        Self::start_under(&[], extra).await
    }

    /// Like [`start_with`](Self::start_with), run by `prefix` (e.g.
    /// `["prlimit", "--nofile=1024:1024", "--"]`).
    pub async fn start_under(prefix: &[&str], extra: &[&str]) -> TestServer {
        Self::start_full(prefix, extra, default_datastore()).await
    }

    /// A server whose Node API listens on `host` (an address another
    /// network namespace reaches) and a free port.
    pub async fn start_listening_on(host: &str, extra: &[&str]) -> TestServer {
        Self::start_full_at(
            "example.org",
            &format!("{host}:0"),
            &[],
            extra,
            default_datastore(),
        )
        .await
    }

    /// A server run by `prefix` (e.g. a network namespace's `ip netns exec`)
    /// on its loopback. Always SQLite: a namespace reaches no database on
    /// the test's host.
    pub async fn start_inside(prefix: &[String], extra: &[&str]) -> TestServer {
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        Self::start_full_at("example.org", "127.0.0.1:0", &prefix, extra, None).await
    }

    /// A server of `trust_domain` (not example.org) with extra `run` flags.
    pub async fn start_in(trust_domain: &str, extra: &[&str]) -> TestServer {
        Self::start_full_in(trust_domain, &[], extra, default_datastore()).await
    }

    /// A server on the datastore `url` (`postgres://...`): several such
    /// servers on one database are an HA group.
    pub async fn start_on(url: &str, extra: &[&str]) -> TestServer {
        Self::start_full(&[], extra, Some(url.to_owned())).await
    }

    /// A server on the data dir's SQLite file whatever the switch says,
    /// for tests of the file itself.
    pub async fn start_sqlite() -> TestServer {
        Self::start_full(&[], &[], None).await
    }

    async fn start_full(prefix: &[&str], extra: &[&str], datastore: Option<String>) -> TestServer {
        Self::start_full_in("example.org", prefix, extra, datastore).await
    }

    async fn start_full_in(
        trust_domain: &str,
        prefix: &[&str],
        extra: &[&str],
        datastore: Option<String>,
    ) -> TestServer {
        Self::start_full_at(trust_domain, "127.0.0.1:0", prefix, extra, datastore).await
    }

    async fn start_full_at(
        trust_domain: &str,
        addr: &str,
        prefix: &[&str],
        extra: &[&str],
        datastore: Option<String>,
    ) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("sgs")
            .tempdir()
            .expect("tempdir");
        let mut s = TestServer {
            data_dir: dir.path().join("data"),
            admin_socket: dir.path().join("admin.sock"),
            // The server picks a free port; restarts reuse the one it got.
            addr: addr.into(),
            trust_domain: trust_domain.into(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            datastore,
            dir,
            proc: None,
        };
        s.launch().await;
        s
    }

    async fn launch(&mut self) {
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bins().server);
                c
            }
            None => Command::new(&bins().server),
        };
        cmd.arg("run")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--admin-socket")
            .arg(&self.admin_socket)
            .arg("--bind")
            .arg(&self.addr)
            .arg("--trust-domain")
            .arg(&self.trust_domain)
            .args(&self.extra_args);
        if let Some(url) = &self.datastore {
            cmd.arg("--datastore").arg(url);
        }
        self.proc = Some(Proc::spawn("signet-server", cmd, self.dir.path()));
        self.wait_healthy().await;
    }

    pub async fn wait_healthy(&mut self) {
        let this = &*self;
        wait::until(
            "server healthcheck",
            Duration::from_secs(30),
            || async move {
                let out = this.cli(&["healthcheck"]);
                out.status.success().then_some(())
            },
        )
        .await;
        if self.addr.ends_with(":0") {
            self.addr = crate::logged_addr(&self.log_text(), "Node API on ")
                .expect("the server logs the Node API address it bound");
        }
    }

    /// Where the SPIFFE bundle endpoint answers (run with a
    /// `[federation.bundle_endpoint]` config).
    pub fn bundle_endpoint_addr(&self) -> String {
        crate::logged_addr(&self.log_text(), "serving the SPIFFE bundle endpoint addr=")
            .expect("the server logs its bundle endpoint address")
    }

    /// Where `/live`, `/ready` and `/metrics` answer (run with
    /// `--telemetry-bind 127.0.0.1:0`).
    pub fn telemetry_addr(&self) -> String {
        crate::logged_addr(&self.log_text(), "serving /live, /ready and /metrics addr=")
            .expect("the server logs its telemetry address")
    }

    /// Graceful stop (SIGTERM) and start again on the same data dir and port.
    pub async fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
        }
        self.launch().await;
    }

    /// kill -9 and start again.
    pub async fn crash_and_restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
        let _ = std::fs::remove_file(&self.admin_socket);
        self.launch().await;
    }

    /// kill -9, no restart: a server lost for good, or until `start_again`.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
        let _ = std::fs::remove_file(&self.admin_socket);
    }

    /// Starts again after [`stop`](Self::stop), on the same data dir and port.
    pub async fn start_again(&mut self) {
        self.launch().await;
    }

    /// What runs the server from its next start on (e.g. `["faketime",
    /// "+2d"]` to start it two days later).
    pub fn set_prefix(&mut self, prefix: &[&str]) {
        self.prefix = prefix.iter().map(|s| s.to_string()).collect();
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
        }
    }

    /// Runs `signet-server <args> --admin-socket <ours>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&bins().server)
            .args(args)
            .arg("--admin-socket")
            .arg(&self.admin_socket)
            .output()
            .expect("run signet-server cli")
    }

    /// Runs `signet-server audit <args>` on this server's datastore (read
    /// directly, as the audit commands do).
    pub fn audit(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&bins().server);
        cmd.arg("audit")
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir);
        if let Some(url) = &self.datastore {
            cmd.arg("--datastore").arg(url);
        }
        cmd.output().expect("run signet-server audit")
    }

    /// Like `cli`, but panics with stderr when the command fails; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "signet-server {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn join_token(&self) -> String {
        self.cli_ok(&["token", "generate"])
    }

    /// `entry create`; returns the entry id.
    pub fn create_entry(
        &self,
        spiffe_id: &str,
        parent_id: &str,
        selectors: &[&str],
        extra: &[&str],
    ) -> String {
        let mut args = vec![
            "entry",
            "create",
            "--spiffe-id",
            spiffe_id,
            "--parent-id",
            parent_id,
        ];
        for s in selectors {
            args.push("--selector");
            args.push(s);
        }
        args.extend_from_slice(extra);
        self.cli_ok(&args)
    }

    pub fn delete_entry(&self, id: &str) {
        self.cli_ok(&["entry", "delete", "--id", id]);
    }

    /// The CA certificates, DER, from `bundle show` (PEM).
    pub fn bundle_der(&self) -> Vec<Vec<u8>> {
        let pem = self.cli_ok(&["bundle", "show"]);
        signet_core::pem::decode_certs(pem.as_bytes()).expect("bundle PEM")
    }

    /// The SPIFFE bundle document from `bundle show --format spiffe`.
    pub fn spiffe_bundle(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["bundle", "show", "--format", "spiffe"]))
            .expect("bundle show --format spiffe prints JSON")
    }

    /// The server's JWT signing key, read from its data dir, to forge tokens
    /// the server would never mint (expired, odd headers) with a trusted key.
    pub fn jwt_signer(&self) -> signet_core::jwt::JwtSigner {
        let bundle = self.spiffe_bundle();
        let kid = bundle["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["use"] == "jwt-svid")
            .and_then(|k| k["kid"].as_str())
            .expect("a jwt-svid key in the bundle")
            .to_string();
        let pem = std::fs::read(
            self.data_dir
                .join("ca")
                .join("jwt")
                .join(format!("{kid}.key.pem")),
        )
        .expect("JWT key file");
        let der = signet_core::pem::decode_private_key(&pem).expect("PKCS#8 PEM");
        signet_core::jwt::JwtSigner::from_pkcs8(kid, &der).expect("P-256 key")
    }

    /// `authority <kind> show --output json`: (id, state, tainted) of each.
    pub fn authorities(&self, kind: &str) -> Vec<(String, String, bool)> {
        let out = self.cli_ok(&["authority", kind, "show", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("authority show JSON");
        v["authorities"]
            .as_array()
            .expect("authorities array")
            .iter()
            .map(|a| {
                (
                    a["id"].as_str().unwrap_or_default().to_string(),
                    a["state"].as_str().unwrap_or_default().to_string(),
                    a["tainted"].as_bool().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The id of the authority of `kind` in `state`.
    pub fn authority_in_state(&self, kind: &str, state: &str) -> Option<String> {
        self.authorities(kind)
            .into_iter()
            .find(|(_, s, _)| s == state)
            .map(|(id, _, _)| id)
    }

    pub fn id(&self, path: &str) -> String {
        format!("spiffe://{}{}", self.trust_domain, path)
    }

    pub fn data_path(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }
}
