//! Real SPIRE, `spire-server` and `spire-agent` of the version
//! `scripts/build-spire` pins, on temp dirs, free ports and private sockets:
//! the other side of the interop tests (federation between a SPIRE trust
//! domain and Signet's). Driven through SPIRE's own CLI, as its users do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::Proc;
use crate::wait;

/// SPIRE's binaries, from the cache `scripts/build-spire` fills.
pub struct SpireBins {
    pub server: PathBuf,
    pub agent: PathBuf,
}

/// Runs `scripts/build-spire` once per test process: a no-op when the cache
/// holds both binaries, a build of minutes on a fresh machine (its progress
/// on stderr). The script alone knows the version and the cache dir; it
/// prints the binaries' dir on stdout.
pub fn spire_bins() -> &'static SpireBins {
    static BINS: OnceLock<SpireBins> = OnceLock::new();
    BINS.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-spire");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed: the SPIRE interop tests need SPIRE (built with Go and gcc)",
            script.display()
        );
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let bins = SpireBins {
            server: dir.join("spire-server"),
            agent: dir.join("spire-agent"),
        };
        assert!(
            bins.server.is_file() && bins.agent.is_file(),
            "scripts/build-spire succeeded but {} lacks spire-server or spire-agent",
            dir.display()
        );
        bins
    })
}

/// How a SPIRE bundle endpoint authenticates itself, as
/// `federation create -bundleEndpointProfile` takes it.
#[derive(Debug, Clone, Copy)]
pub enum EndpointProfile<'a> {
    /// The endpoint presents an X509-SVID with this SPIFFE ID.
    HttpsSpiffe { endpoint_spiffe_id: &'a str },
    /// The endpoint has a Web PKI certificate.
    HttpsWeb,
}

pub struct SpireServer {
    pub dir: TempDir,
    pub trust_domain: String,
    pub config_path: PathBuf,
    /// The server API socket every CLI command goes through.
    pub socket_path: PathBuf,
    /// The Node API (agents) on 127.0.0.1.
    pub port: u16,
    /// The federation bundle endpoint on 127.0.0.1 (profile https_spiffe).
    pub bundle_endpoint_port: u16,
    pub proc: Option<Proc>,
}

impl SpireServer {
    /// Starts a server for `trust_domain` and waits until it is healthy.
    /// `extra_config` is HCL put last inside the `server { }` block: SPIRE
    /// takes the last value of a repeated key (`ca_ttl = "2h"` overrides the
    /// fixture's) and merges repeated blocks (`federation { bundle_endpoint
    /// { refresh_hint = "5s" } }` keeps the fixture's address and port).
    pub async fn start(trust_domain: &str, extra_config: &str) -> SpireServer {
        let dir = tempfile::Builder::new()
            .prefix("sps")
            .tempdir()
            .expect("tempdir");
        let mut server = SpireServer {
            config_path: dir.path().join("server.conf"),
            socket_path: dir.path().join("api.sock"),
            trust_domain: trust_domain.to_owned(),
            port: crate::free_port(),
            bundle_endpoint_port: crate::free_port(),
            dir,
            proc: None,
        };
        std::fs::write(&server.config_path, server.config(extra_config)).expect("write config");
        server.launch().await;
        server
    }

    fn config(&self, extra: &str) -> String {
        let d = self.dir.path().display();
        // Short lifetimes so rotation can show within a test; SPIRE warns
        // when an SVID TTL exceeds 1/6 of the CA's. The profile is explicit
        // because SPIRE means to refuse a bundle endpoint without one.
        format!(
            r#"server {{
  bind_address = "127.0.0.1"
  bind_port = "{port}"
  socket_path = "{socket}"
  trust_domain = "{td}"
  data_dir = "{d}/data"
  log_level = "INFO"
  ca_ttl = "1h"
  default_x509_svid_ttl = "10m"
  default_jwt_svid_ttl = "5m"
  federation {{
    bundle_endpoint {{
      address = "127.0.0.1"
      port = {bundle_port}
      profile "https_spiffe" {{}}
    }}
  }}
{extra}
}}

plugins {{
  DataStore "sql" {{
    plugin_data {{
      database_type = "sqlite3"
      connection_string = "{d}/data/datastore.sqlite3"
    }}
  }}
  KeyManager "disk" {{ plugin_data {{ keys_path = "{d}/data/keys.json" }} }}
  NodeAttestor "join_token" {{ plugin_data {{}} }}
}}
"#,
            port = self.port,
            socket = self.socket_path.display(),
            td = self.trust_domain,
            bundle_port = self.bundle_endpoint_port,
        )
    }

    async fn launch(&mut self) {
        let mut cmd = Command::new(&spire_bins().server);
        cmd.arg("run").arg("-config").arg(&self.config_path);
        self.proc = Some(Proc::spawn("spire-server", cmd, self.dir.path()));
        let this = &*self;
        wait::until(
            "spire-server healthcheck",
            Duration::from_secs(60),
            || async move { this.cli(&["healthcheck"]).status.success().then_some(()) },
        )
        .await;
    }

    /// Graceful stop and start again on the same data dir and ports.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
        }
    }

    /// `spiffe://<td><path>`.
    pub fn id(&self, path: &str) -> String {
        format!("spiffe://{}{path}", self.trust_domain)
    }

    /// Runs `spire-server <args> -socketPath <ours>`. Go's flag parser stops
    /// at the first positional argument, so `args` are subcommands and flags.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&spire_bins().server)
            .args(args)
            .arg("-socketPath")
            .arg(&self.socket_path)
            .output()
            .expect("run spire-server cli")
    }

    /// Like `cli`, but panics with the output when the command fails;
    /// returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "spire-server {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A join token for one agent.
    pub fn token_generate(&self) -> String {
        let out = self.cli_ok(&["token", "generate"]);
        out.lines()
            .find_map(|l| l.strip_prefix("Token: "))
            .unwrap_or_else(|| panic!("token generate printed no token: {out}"))
            .trim()
            .to_string()
    }

    /// `entry create`; `extra` are more flags (`-federatesWith
    /// spiffe://a.test`, `-x509SVIDTTL 60`, `-dns x`). Returns the entry id.
    pub fn entry_create(
        &self,
        parent_id: &str,
        spiffe_id: &str,
        selectors: &[&str],
        extra: &[&str],
    ) -> String {
        let mut args = vec!["entry", "create", "-output", "json"];
        args.extend(["-parentID", parent_id, "-spiffeID", spiffe_id]);
        for s in selectors {
            args.extend(["-selector", s]);
        }
        args.extend_from_slice(extra);
        let out = self.cli_ok(&args);
        let json: serde_json::Value = serde_json::from_str(&out).expect("entry create JSON");
        // With `-output json` a refused entry (one that exists already)
        // still exits 0: the per-entry status tells.
        let result = &json["results"][0];
        assert!(
            result["status"]["code"].as_i64().unwrap_or(0) == 0,
            "entry create {spiffe_id} refused: {out}"
        );
        result["entry"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("entry create printed no id: {out}"))
            .to_string()
    }

    /// The trust domain's CA certificates, PEM.
    pub fn bundle_show_pem(&self) -> String {
        self.cli_ok(&["bundle", "show", "-format", "pem"])
    }

    /// The trust domain's SPIFFE bundle (JWKS with `spiffe_sequence`).
    pub fn bundle_show_spiffe(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["bundle", "show", "-format", "spiffe"]))
            .expect("bundle show -format spiffe prints JSON")
    }

    /// Stores `path` (a SPIFFE bundle) as the bundle of the foreign trust
    /// domain `trust_domain` (a bare name, `a.test`).
    pub fn bundle_set(&self, trust_domain: &str, path: &Path) {
        let id = format!("spiffe://{trust_domain}");
        let path = path.to_str().expect("UTF-8 path");
        self.cli_ok(&[
            "bundle", "set", "-id", &id, "-path", path, "-format", "spiffe",
        ]);
    }

    /// Federates with `trust_domain` through its bundle endpoint at `url`;
    /// `bundle` (a SPIFFE bundle file) bootstraps an https_spiffe endpoint
    /// whose bundle was not set before.
    pub fn federation_create(
        &self,
        trust_domain: &str,
        url: &str,
        profile: EndpointProfile<'_>,
        bundle: Option<&Path>,
    ) {
        let mut args = vec!["federation", "create", "-trustDomain", trust_domain];
        args.extend(["-bundleEndpointURL", url, "-bundleEndpointProfile"]);
        match profile {
            EndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
                args.extend(["https_spiffe", "-endpointSpiffeID", endpoint_spiffe_id]);
            }
            EndpointProfile::HttpsWeb => args.push("https_web"),
        }
        if let Some(path) = bundle {
            args.extend(["-trustDomainBundlePath", path.to_str().expect("UTF-8 path")]);
            args.extend(["-trustDomainBundleFormat", "spiffe"]);
        }
        self.cli_ok(&args);
    }

    /// A JWT-SVID for `spiffe_id` minted by the server itself (no entry
    /// needed), JWS compact.
    pub fn jwt_mint(&self, spiffe_id: &str, audience: &str) -> String {
        self.cli_ok(&["jwt", "mint", "-spiffeID", spiffe_id, "-audience", audience])
    }

    /// The bundle SPIRE holds for the foreign `trust_domain` (`a.test`),
    /// None while it has none.
    pub fn federated_bundle_spiffe(&self, trust_domain: &str) -> Option<serde_json::Value> {
        let id = format!("spiffe://{trust_domain}");
        let out = self.cli(&["bundle", "list", "-id", &id, "-format", "spiffe"]);
        out.status.success().then(|| {
            serde_json::from_slice(&out.stdout).expect("bundle list -format spiffe prints JSON")
        })
    }

    /// Fetches `trust_domain`'s bundle from its endpoint now, instead of at
    /// SPIRE's next poll (a quarter of the refresh hint, at least 15 s).
    pub fn federation_refresh(&self, trust_domain: &str) -> Output {
        self.cli(&["federation", "refresh", "-id", trust_domain])
    }

    /// Where SPIRE serves its bundle to federated trust domains.
    pub fn bundle_endpoint_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.bundle_endpoint_port)
    }

    /// The SPIFFE ID the bundle endpoint presents (https_spiffe profile).
    pub fn bundle_endpoint_spiffe_id(&self) -> String {
        self.id("/spire/server")
    }

    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }
}

pub struct SpireAgent {
    pub dir: TempDir,
    /// The Workload API socket.
    pub socket_path: PathBuf,
    /// `spiffe://<td>/spire/agent/join_token/<token>`: the parent of
    /// workload entries.
    pub spiffe_id: String,
    pub proc: Option<Proc>,
}

impl SpireAgent {
    /// Attests to `server` with a fresh join token, trusting the server's
    /// current bundle (no insecure bootstrap), with the `unix` workload
    /// attestor; waits until healthy.
    pub async fn start(server: &SpireServer) -> SpireAgent {
        let dir = tempfile::Builder::new()
            .prefix("spa")
            .tempdir()
            .expect("tempdir");
        let token = server.token_generate();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, server.bundle_show_pem()).expect("write bundle");
        let socket_path = dir.path().join("api.sock");
        let d = dir.path().display();
        let config = format!(
            r#"agent {{
  data_dir = "{d}/data"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "{port}"
  socket_path = "{socket}"
  trust_bundle_path = "{bundle}"
  trust_domain = "{td}"
  join_token = "{token}"
}}

plugins {{
  NodeAttestor "join_token" {{ plugin_data {{}} }}
  KeyManager "disk" {{ plugin_data {{ directory = "{d}/data" }} }}
  WorkloadAttestor "unix" {{ plugin_data {{}} }}
}}
"#,
            port = server.port,
            socket = socket_path.display(),
            bundle = bundle.display(),
            td = server.trust_domain,
        );
        let config_path = dir.path().join("agent.conf");
        std::fs::write(&config_path, config).expect("write config");

        let mut cmd = Command::new(&spire_bins().agent);
        cmd.arg("run").arg("-config").arg(&config_path);
        let agent = SpireAgent {
            proc: Some(Proc::spawn("spire-agent", cmd, dir.path())),
            spiffe_id: server.id(&format!("/spire/agent/join_token/{token}")),
            socket_path,
            dir,
        };
        wait::until(
            "spire-agent healthcheck",
            Duration::from_secs(60),
            || async { agent.cli(&["healthcheck"]).status.success().then_some(()) },
        )
        .await;
        agent
    }

    /// Runs `spire-agent <args> -socketPath <ours>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&spire_bins().agent)
            .args(args)
            .arg("-socketPath")
            .arg(&self.socket_path)
            .output()
            .expect("run spire-agent cli")
    }

    /// `unix:///...`, as SPIFFE clients take it.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket_path.display())
    }

    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }
}
