//! The `signet-server` command line: `run` starts the server; the other
//! verbs are Admin API clients over the admin Unix socket.

mod agent;
mod audit;
mod authority;
mod bundle;
pub mod client;
mod dashboard;
mod datastore;
mod entry;
mod entry_batch;
mod federation;
mod introspect;
mod jwt;
mod policy;
mod revoke;
mod server;
mod token;
mod x509;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{default_admin_socket, ConfigDuration, FileConfig, RuntimeConfig};

#[derive(Debug, Parser)]
#[command(
    name = "signet-server",
    version,
    about = "Signet server: the trust domain's CA and registration API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the server.
    Run(RunArgs),
    /// Join tokens for node attestation.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Registration entries.
    #[command(subcommand)]
    Entry(entry::EntryCommand),
    /// Attested agents.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// The trust bundle, and the bundles of federated trust domains.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Federation relationships: other trust domains' bundle endpoints.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// JWT-SVIDs minted outside any agent (admins, CI jobs, break-glass).
    #[command(subcommand)]
    Jwt(jwt::JwtCommand),
    /// X.509-SVIDs minted outside any agent; the key never leaves this host.
    #[command(subcommand)]
    X509(x509::X509Command),
    /// Exits 0 when the server answers that it is serving.
    Healthcheck(AdminArgs),
    /// The X.509 CA and JWT key authorities: show, prepare, activate, taint, revoke.
    Authority(authority::AuthorityCommand),
    /// Revokes one credential until it expires.
    #[command(subcommand)]
    Revoke(revoke::RevokeCommand),
    /// Is a JWT-SVID active right now? Exit 0 active, 3 inactive, 1 error.
    Introspect(introspect::IntrospectArgs),
    /// Checks a config file: prints `configuration is valid`, or
    /// `FILE:LINE:COL: message` and exits 1.
    Validate(ValidateArgs),
    /// The servers sharing this server's datastore: list, remove.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// The datastore itself: migrate a single-server SQLite install to PostgreSQL.
    #[command(subcommand)]
    Datastore(datastore::DatastoreCommand),
    /// The hash-chained audit log: verify it, show its records.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The read-only trust dashboard: a one-time login link.
    #[command(subcommand)]
    Dashboard(dashboard::DashboardCommand),
    /// Cedar authorization policies: create, update, list, show, delete,
    /// validate.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The TOML config file to check.
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML config file; flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// Node API address, e.g. 127.0.0.1:8081.
    #[arg(long)]
    pub bind: Option<String>,
    #[arg(long)]
    pub admin_socket: Option<PathBuf>,
    /// CA lifetime: seconds or 90s, 15m, 24h.
    #[arg(long, value_parser = duration_arg)]
    pub ca_ttl: Option<Duration>,
    #[arg(long, value_parser = duration_arg)]
    pub default_x509_svid_ttl: Option<Duration>,
    /// Default JWT-SVID lifetime (5m unless set).
    #[arg(long, value_parser = duration_arg)]
    pub default_jwt_svid_ttl: Option<Duration>,
    #[arg(long, value_parser = duration_arg)]
    pub join_token_ttl: Option<Duration>,
    /// How far notBefore is back-dated for clock skew (30s unless set).
    #[arg(long, value_parser = duration_arg)]
    pub not_before_backdate: Option<Duration>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    pub log_json: bool,
    /// Serve /live, /ready and /metrics over HTTP on ADDR, e.g. 127.0.0.1:9090.
    #[arg(long, value_name = "ADDR")]
    pub telemetry_bind: Option<String>,
    /// sqlite://PATH (default: the data dir's datastore.sqlite3) or
    /// postgres://USER@HOST[:PORT]/DB for several servers; the password
    /// comes from [datastore] password_file, never from here.
    #[arg(long, value_name = "URL")]
    pub datastore: Option<String>,
}

impl RunArgs {
    /// File (if any) merged with the flags, converted to the runtime config.
    pub fn runtime_config(&self) -> anyhow::Result<RuntimeConfig> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let flags = FileConfig {
            trust_domain: self.trust_domain.clone(),
            data_dir: self.data_dir.clone(),
            bind: self.bind.clone(),
            admin_socket: self.admin_socket.clone(),
            ca_ttl: self.ca_ttl.map(ConfigDuration),
            default_x509_svid_ttl: self.default_x509_svid_ttl.map(ConfigDuration),
            default_jwt_svid_ttl: self.default_jwt_svid_ttl.map(ConfigDuration),
            join_token_ttl: self.join_token_ttl.map(ConfigDuration),
            not_before_backdate: self.not_before_backdate.map(ConfigDuration),
            log_json: self.log_json.then_some(true),
            authority_prepare_at: None,
            authority_activate_at: None,
            node_attestor: None,
            node_api: None,
            datastore: self
                .datastore
                .clone()
                .map(|url| crate::config::DatastoreConfig {
                    url: Some(url),
                    ..Default::default()
                }),
            upstream_authority: None,
            key_manager: None,
            federation: None,
            audit: None,
            rate_limit: None,
            anomaly: None,
            dashboard: None,
            oidc: None,
            jwt_key_type: None,
            telemetry: self
                .telemetry_bind
                .clone()
                .map(|bind| crate::config::TelemetryConfig { bind: Some(bind) }),
        };
        Ok(RuntimeConfig::try_from(file.merge(flags))?)
    }
}

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Path of the server's admin socket [default: /run/signet-server/admin.sock
    /// for root, else $XDG_RUNTIME_DIR/signet-server/admin.sock].
    #[arg(long, default_value_os_t = default_admin_socket(), hide_default_value = true)]
    pub admin_socket: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

pub fn duration_arg(s: &str) -> Result<Duration, String> {
    signet_core::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// A TTL flag as the wire's seconds: 0 when not given (server default).
pub fn ttl_secs(flag: &str, d: Option<Duration>) -> anyhow::Result<u32> {
    match d {
        None => Ok(0),
        Some(d) if d.is_zero() => anyhow::bail!("{flag} must be longer than zero"),
        Some(d) => u32::try_from(d.as_secs()).map_err(|_| anyhow::anyhow!("{flag} is too long")),
    }
}

/// Runs the command; errors print as `Error: ...` on stderr with exit 1
/// (`run`: logged, exit 78 for a bad configuration).
pub fn dispatch(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => return Ok(run(args).await),
            Command::Token(c) => c.run().await,
            Command::Entry(c) => c.run().await,
            Command::Agent(c) => c.run().await,
            Command::Bundle(c) => c.run().await,
            Command::Federation(c) => c.run().await,
            Command::Jwt(c) => c.run().await,
            Command::X509(c) => c.run().await,
            Command::Healthcheck(a) => return client::healthcheck(&a.admin_socket).await,
            Command::Authority(c) => c.run().await,
            Command::Revoke(c) => c.run().await,
            Command::Introspect(a) => return a.run().await,
            Command::Validate(a) => return Ok(validate(&a)),
            Command::Server(c) => c.run().await,
            Command::Datastore(c) => return c.run().await,
            Command::Audit(c) => return c.run().await,
            Command::Dashboard(c) => c.run().await,
            Command::Policy(c) => c.run().await,
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(args: &ValidateArgs) -> ExitCode {
    match crate::config::validate_file(&args.config) {
        Ok(_) => {
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit code of `run` on an invalid configuration (sysexits' EX_CONFIG):
/// the packaged unit does not restart on it (`RestartPreventExitStatus=78`),
/// since restarting cannot fix it.
pub const EXIT_CONFIGURATION: u8 = 78;

/// The daemon: its last error goes to the log (the journal, at priority
/// err) and to systemd's status line.
async fn run(args: RunArgs) -> ExitCode {
    let (result, failure) = match args.runtime_config() {
        Ok(config) => {
            signet_runtime::logging::init(config.log_json);
            let result = crate::app::run(config, signet_runtime::signals::shutdown()).await;
            (result, ExitCode::FAILURE)
        }
        Err(e) => {
            signet_runtime::logging::init(false);
            (Err(e), ExitCode::from(EXIT_CONFIGURATION))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            signet_runtime::systemd::status(&format!("failed: {e:#}"));
            failure
        }
    }
}

pub use signet_runtime::time::rfc3339;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A list as every `list` command prints it: `{"<key>": [...]}` in JSON;
/// in text `Found N <noun>` (`nouns` = singular, plural), then each item
/// after a blank line.
pub fn print_list<T>(
    output: Output,
    key: &str,
    nouns: (&str, &str),
    items: &[T],
    json: impl Fn(&T) -> serde_json::Value,
    text: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(&serde_json::json!({
            key: items.iter().map(json).collect::<Vec<_>>(),
        })),
        Output::Text => {
            let noun = if items.len() == 1 { nouns.0 } else { nouns.1 };
            println!("Found {} {noun}", items.len());
            for item in items {
                println!();
                print!("{}", text(item));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn cli_parses_every_verb() {
        for args in [
            vec!["signet-server", "run", "--ca-ttl", "2h", "--log-json"],
            vec![
                "signet-server",
                "token",
                "generate",
                "--ttl",
                "90s",
                "--output",
                "json",
            ],
            vec![
                "signet-server",
                "entry",
                "create",
                "--spiffe-id",
                "spiffe://example.org/w",
                "--parent-id",
                "spiffe://example.org/a",
                "--selector",
                "unix:uid:1",
                "--selector",
                "unix:gid:1",
                "--dns",
                "w.local",
                "--x509-svid-ttl",
                "1h",
            ],
            vec!["signet-server", "entry", "create", "--data", "entries.json"],
            vec![
                "signet-server",
                "entry",
                "create",
                "--data",
                "-",
                "--output",
                "json",
            ],
            vec!["signet-server", "entry", "show", "--selector", "unix:uid:1"],
            vec!["signet-server", "entry", "delete", "--id", "x"],
            vec![
                "signet-server",
                "entry",
                "count",
                "--admin-socket",
                "/tmp/a.sock",
            ],
            vec!["signet-server", "agent", "list"],
            vec![
                "signet-server",
                "agent",
                "ban",
                "--spiffe-id",
                "spiffe://example.org/a",
            ],
            vec!["signet-server", "bundle", "show", "--format", "spiffe"],
            vec!["signet-server", "healthcheck"],
            vec![
                "signet-server",
                "jwt",
                "mint",
                "--spiffe-id",
                "spiffe://example.org/ci",
                "--audience",
                "a",
                "--audience",
                "b",
                "--ttl",
                "60s",
                "--output",
                "json",
            ],
            vec![
                "signet-server",
                "x509",
                "mint",
                "--spiffe-id",
                "spiffe://example.org/ci",
                "--dns",
                "ci.local",
                "--ttl",
                "10m",
                "--write",
                "/tmp/out",
            ],
            vec!["signet-server", "run", "--default-jwt-svid-ttl", "2m"],
            vec![
                "signet-server",
                "authority",
                "x509",
                "show",
                "--output",
                "json",
            ],
            vec![
                "signet-server",
                "authority",
                "jwt",
                "prepare",
                "--admin-socket",
                "/s",
            ],
            vec!["signet-server", "authority", "x509", "activate"],
            vec!["signet-server", "authority", "x509", "taint", "--id", "ab"],
            vec!["signet-server", "authority", "jwt", "revoke", "--id", "ab"],
            vec![
                "signet-server",
                "revoke",
                "x509",
                "--serial",
                "0a:bc",
                "--reason",
                "r",
            ],
            vec!["signet-server", "revoke", "jwt", "--jti", "x"],
            vec!["signet-server", "validate", "--config", "/etc/s.toml"],
            vec!["signet-server", "run", "--telemetry-bind", "127.0.0.1:9090"],
            vec![
                "signet-server",
                "entry",
                "create",
                "--node",
                "--spiffe-id",
                "spiffe://example.org/edge",
                "--selector",
                "x509pop:subject:cn:edge-1",
            ],
            vec![
                "signet-server",
                "introspect",
                "--token",
                "t",
                "--audience",
                "a",
                "--output",
                "json",
            ],
        ] {
            Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(Cli::try_parse_from(["signet-server", "run", "--ca-ttl", "1x"]).is_err());
        // --data replaces the single-entry flags; without it they are required.
        for bad in [
            &[
                "entry",
                "create",
                "--data",
                "f",
                "--spiffe-id",
                "spiffe://example.org/w",
            ][..],
            &["entry", "create", "--data", "f", "--selector", "unix:uid:1"],
            &["entry", "create", "--spiffe-id", "spiffe://example.org/w"],
        ] {
            let args = std::iter::once("signet-server").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
        // jwt mint needs an audience.
        assert!(Cli::try_parse_from([
            "signet-server",
            "jwt",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/ci"
        ])
        .is_err());
    }
}
