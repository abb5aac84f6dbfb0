//! Agent configuration: embedded defaults, an optional TOML file (unknown keys
//! rejected) and command-line flags, merged once into a typed
//! [`RuntimeConfig`] that the rest of the agent reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signet_core::duration::parse_duration;
use signet_core::TrustDomain;

use crate::node_client::{AddressError, ServerAddresses};

mod audit;
mod authz;
mod node_attestor;
mod sds;
mod workload_api;
use crate::attest::key::KeySource;
pub use audit::{AuditSection, DEFAULT_AUDIT_CHECKPOINT_INTERVAL};
pub use authz::{AuthzSection, AuthzSettings};
pub use node_attestor::{KeyManagerFile, NodeAttestorFile, TpmConfig, TpmKeyConfig, X509PopConfig};
pub use sds::{SdsSection, SdsSettings};
pub use workload_api::{WorkloadApiLimits, WorkloadApiSection, DEFAULT_RATE_LIMIT};

/// Embedded defaults (CONTRACT.md); no config file is needed.
pub const DEFAULT_TRUST_DOMAIN: &str = "example.org";
pub const DEFAULT_DATA_DIR: &str = ".data/agent";
/// The Node API of the server(s): `HOST:PORT`, or several of an HA group as
/// `A,B,C` (a TOML array also does), tried in this order; a name resolving
/// to several addresses stands for several servers.
pub const DEFAULT_SERVER_ADDRESS: &str = "127.0.0.1:8081";
/// Where the packaged agent serves (the unit's `RuntimeDirectory=`).
pub const PACKAGED_SOCKET_PATH: &str = "/run/signet-agent/public/api.sock";
pub const DEFAULT_PROCFS_ROOT: &str = "/proc";
/// Binaries larger than this are not hashed for the `unix:sha256` selector.
pub const DEFAULT_HASH_SIZE_LIMIT: u64 = 256 * 1024 * 1024;
/// Clock skew tolerated when validating a JWT-SVID's `exp`, `nbf`, `iat`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
/// A server clock further off than this is reported (log and healthcheck).
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// How long one workload attestor may take before its selectors are dropped.
pub const DEFAULT_ATTESTOR_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one Docker Engine API call may take.
pub const DEFAULT_DOCKER_TIMEOUT: Duration = Duration::from_secs(2);
/// Workload API connections one uid may hold open at once (a node with a
/// hundred containers all running as root holds a few hundred).
pub const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 1024;
/// Workload API connections in all; the open-file limit may lower it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// Upper bounds of the duration settings: a value above is a typo or an
/// attack on the arithmetic, and is refused naming the setting.
pub const MAX_JWT_LEEWAY: Duration = Duration::from_secs(3600);
pub const MAX_CLOCK_SKEW_SETTING: Duration = Duration::from_secs(24 * 3600);
pub const MAX_ATTESTOR_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The Workload API socket when nothing names one: the packaged path for
/// root, else under `$XDG_RUNTIME_DIR` (see [`signet_runtime::dirs::runtime_dir`]).
pub fn default_socket_path() -> PathBuf {
    signet_runtime::dirs::runtime_dir("signet-agent").join("public/api.sock")
}

pub use signet_core::duration::ConfigDuration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid trust domain: {0}")]
    TrustDomain(#[from] signet_core::SpiffeIdError),
    #[error("--trust-bundle and --insecure-bootstrap exclude each other")]
    ConflictingBootstrap,
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("invalid {setting}: {source}")]
    ServerAddress {
        /// `--server-address` or `server_address`.
        setting: &'static str,
        #[source]
        source: AddressError,
    },
    #[error("invalid {0}: {1}")]
    Duration(&'static str, String),
    #[error("invalid [sds]: {0}")]
    Sds(String),
    #[error("invalid [authz]: {0}")]
    Authz(String),
}

/// The TOML file: every key optional, named like the long flags.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub trust_domain: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub server_address: Option<ServerAddressSetting>,
    pub socket_path: Option<PathBuf>,
    pub join_token: Option<String>,
    pub trust_bundle_path: Option<PathBuf>,
    pub insecure_bootstrap: Option<bool>,
    pub jwt_leeway: Option<ConfigDuration>,
    pub max_clock_skew: Option<ConfigDuration>,
    pub node_attestor: Option<NodeAttestorFile>,
    pub key_manager: Option<KeyManagerFile>,
    // Workload attestation and telemetry (issue 5).
    pub workload_attestors: Option<Vec<AttestorKind>>,
    pub attestor_timeout: Option<ConfigDuration>,
    pub workload_attestor: Option<WorkloadAttestorSection>,
    pub telemetry: Option<TelemetrySection>,
    pub workload_api: Option<WorkloadApiSection>,
    pub audit: Option<AuditSection>,
    pub sds: Option<SdsSection>,
    pub authz: Option<AuthzSection>,
    // Edge nodes (issue 20).
    pub svid_prefetch: Option<ConfigDuration>,
    pub reattest_token_file: Option<PathBuf>,
}

/// `server_address` in the file: `"A,B,C"` or `["A", "B", "C"]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(
    untagged,
    expecting = "a HOST:PORT list, as \"a:8081,b:8081\" or [\"a:8081\", \"b:8081\"]"
)]
pub enum ServerAddressSetting {
    List(String),
    Items(Vec<String>),
}

impl ServerAddressSetting {
    fn addresses(&self) -> Result<ServerAddresses, AddressError> {
        match self {
            Self::List(list) => ServerAddresses::parse(list),
            Self::Items(items) => ServerAddresses::from_list(items),
        }
    }
}

/// `value` (or `default`), above zero and at most `max`.
fn bounded(
    name: &'static str,
    value: Option<Duration>,
    default: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = value.unwrap_or(default);
    if d.is_zero() {
        return Err(ConfigError::Duration(name, "must be above 0".into()));
    }
    if d > max {
        return Err(ConfigError::Duration(
            name,
            format!("{}s is above the limit of {}s", d.as_secs(), max.as_secs()),
        ));
    }
    Ok(d)
}

/// The workload attestors an agent can run, by their config name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttestorKind {
    Unix,
    Container,
    Systemd,
}

/// `[workload_attestor.*]`: per-attestor settings.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadAttestorSection {
    pub docker: Option<DockerSection>,
}

/// `[workload_attestor.docker]`: the Engine API socket (Docker or Podman).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DockerSection {
    pub socket_path: PathBuf,
    /// Environment variable names whose values become `docker:env:` selectors.
    #[serde(default)]
    pub env_allow: Vec<String>,
    pub timeout: Option<ConfigDuration>,
}

/// `[telemetry]`: where `/live`, `/ready` and `/metrics` are served.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    pub bind: Option<std::net::SocketAddr>,
}

/// Docker Engine API settings in the runtime config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSettings {
    pub socket_path: PathBuf,
    pub env_allow: Vec<String>,
    pub timeout: Duration,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

/// `signet-agent validate`: the file parses, every key is known and the
/// merged configuration is valid. Errors read `FILE:LINE:COL: message`.
pub fn validate_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: FileConfig = toml::from_str(&text).map_err(|e| {
        let (line, col) = e.span().map_or((1, 1), |span| line_col(&text, span.start));
        format!(
            "{}:{line}:{col}: {}",
            path.display(),
            e.message().trim_end()
        )
    })?;
    RuntimeConfig::merge(file, &RunArgs::default())
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `signet-agent run` flags; each overrides the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct RunArgs {
    /// TOML config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the agent keeps its key, SVID and bundle.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Node API address of the server, HOST:PORT; for an HA group several,
    /// comma-separated, tried in this order (a failed server is left for the
    /// next at once; a DNS name with several addresses counts as several).
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]")]
    pub server_address: Option<String>,
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// Workload API Unix socket.
    #[arg(long)]
    pub socket_path: Option<PathBuf>,
    /// One-time join token for the first attestation.
    #[arg(long)]
    pub join_token: Option<String>,
    /// PEM CA certificates to trust the server on first contact.
    #[arg(long, conflicts_with = "insecure_bootstrap")]
    pub trust_bundle: Option<PathBuf>,
    /// Accept any server certificate for the first attestation only.
    #[arg(long)]
    pub insecure_bootstrap: bool,
    /// Clock skew tolerated when validating JWT-SVIDs, e.g. 30s (default).
    #[arg(long, value_name = "DUR")]
    pub jwt_leeway: Option<String>,
    /// Server clock difference reported as a problem, e.g. 30s (default).
    #[arg(long, value_name = "DUR")]
    pub max_clock_skew: Option<String>,
    /// Log JSON lines instead of human-readable text.
    #[arg(long)]
    pub log_json: bool,
    /// Serve /live, /ready and /metrics over HTTP on ADDR (e.g. 127.0.0.1:9988).
    #[arg(long, value_name = "ADDR")]
    pub telemetry_bind: Option<std::net::SocketAddr>,
    /// Renew SVIDs once less than DUR is left (e.g. 22h for 24 h SVIDs
    /// on an edge node that must ride out a 22 h outage).
    #[arg(long, value_name = "DUR")]
    pub svid_prefetch: Option<String>,
    /// A join token for attesting again when the agent SVID expired while
    /// the server was away: read when needed, each token used once.
    #[arg(long, value_name = "FILE")]
    pub reattest_token_file: Option<PathBuf>,
}

/// How the agent trusts the server before it holds a bundle of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Only the bundle persisted in the data dir.
    DataDir,
    /// PEM file with the CA certificates for first contact.
    TrustBundle(PathBuf),
    /// No server check on the first attestation.
    Insecure,
}

/// The merged, typed configuration.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub trust_domain: TrustDomain,
    pub data_dir: PathBuf,
    /// The servers, in order of preference.
    pub server_address: ServerAddresses,
    pub socket_path: PathBuf,
    pub join_token: Option<String>,
    /// x509pop node attestation; when set, used instead of a join token.
    pub x509pop: Option<X509PopConfig>,
    /// tpm node attestation; when set, used instead of a join token.
    pub tpm: Option<TpmConfig>,
    /// Where the agent's own key is made (`[key_manager.tpm]`: in the TPM).
    pub key_source: crate::attest::key::KeySource,
    pub bootstrap: Bootstrap,
    pub log_json: bool,
    /// Root of the proc filesystem read by the unix workload attestor.
    pub procfs_root: PathBuf,
    pub hash_size_limit: u64,
    pub jwt_leeway: Duration,
    pub max_clock_skew: Duration,
    /// Workload attestors to run, in order (default unix, container, systemd).
    pub workload_attestors: Vec<AttestorKind>,
    pub attestor_timeout: Duration,
    /// Docker/Podman Engine API for the container attestor's `docker:` selectors.
    pub docker: Option<DockerSettings>,
    /// HTTP address for `/live`, `/ready`, `/metrics`; none when unset.
    pub telemetry_bind: Option<std::net::SocketAddr>,
    pub workload_api: WorkloadApiLimits,
    /// How often the audit log's head is reported to the server.
    pub audit_checkpoint_interval: Duration,
    /// Envoy SDS resource names (`[sds]`).
    pub sds: SdsSettings,
    /// Envoy ext_authz's JWT-SVID principals (`[authz]`).
    pub authz: AuthzSettings,
    /// Renew once less than this is left (else at half-life).
    pub svid_prefetch: Option<Duration>,
    /// Where a join token for attesting again is put (join-token agents).
    pub reattest_token_file: Option<PathBuf>,
}

impl RuntimeConfig {
    /// Defaults, then the file named by `--config` (if any), then flags.
    pub fn from_args(args: &RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::merge(file, args)
    }

    pub fn merge(file: FileConfig, args: &RunArgs) -> Result<Self, ConfigError> {
        let td = args
            .trust_domain
            .clone()
            .or(file.trust_domain)
            .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_owned());
        let server_address = match (&args.server_address, &file.server_address) {
            (Some(flag), _) => {
                ServerAddresses::parse(flag).map_err(|source| ConfigError::ServerAddress {
                    setting: "--server-address",
                    source,
                })?
            }
            (None, Some(setting)) => {
                setting
                    .addresses()
                    .map_err(|source| ConfigError::ServerAddress {
                        setting: "server_address",
                        source,
                    })?
            }
            (None, None) => ServerAddresses::parse(DEFAULT_SERVER_ADDRESS).map_err(|source| {
                ConfigError::ServerAddress {
                    setting: "server_address",
                    source,
                }
            })?,
        };
        let join_token = args
            .join_token
            .clone()
            .or(file.join_token)
            .filter(|t| !t.is_empty());
        let trust_bundle = args.trust_bundle.clone().or(file.trust_bundle_path);
        let insecure = args.insecure_bootstrap || file.insecure_bootstrap.unwrap_or(false);
        let bootstrap = match (trust_bundle, insecure) {
            (Some(_), true) => return Err(ConfigError::ConflictingBootstrap),
            (Some(p), false) => Bootstrap::TrustBundle(p),
            (None, true) => Bootstrap::Insecure,
            (None, false) => Bootstrap::DataDir,
        };
        let jwt_leeway = match &args.jwt_leeway {
            Some(text) => {
                let d = parse_duration(text)
                    .map_err(|e| ConfigError::Duration("--jwt-leeway", e.to_string()))?;
                at_most("--jwt-leeway", d, MAX_JWT_LEEWAY)?
            }
            None => at_most(
                "jwt_leeway",
                file.jwt_leeway.map_or(DEFAULT_JWT_LEEWAY, |d| d.0),
                MAX_JWT_LEEWAY,
            )?,
        };
        let max_clock_skew = match &args.max_clock_skew {
            Some(text) => {
                let d = parse_duration(text)
                    .map_err(|e| ConfigError::Duration("--max-clock-skew", e.to_string()))?;
                at_most("--max-clock-skew", d, MAX_CLOCK_SKEW_SETTING)?
            }
            None => at_most(
                "max_clock_skew",
                file.max_clock_skew.map_or(DEFAULT_MAX_CLOCK_SKEW, |d| d.0),
                MAX_CLOCK_SKEW_SETTING,
            )?,
        };
        let mut workload_attestors = Vec::new();
        for kind in file.workload_attestors.unwrap_or_else(|| {
            vec![
                AttestorKind::Unix,
                AttestorKind::Container,
                AttestorKind::Systemd,
            ]
        }) {
            if !workload_attestors.contains(&kind) {
                workload_attestors.push(kind);
            }
        }
        let attestor_timeout = bounded(
            "attestor_timeout",
            file.attestor_timeout.map(|d| d.0),
            DEFAULT_ATTESTOR_TIMEOUT,
            MAX_ATTESTOR_TIMEOUT,
        )?;
        let docker = match file.workload_attestor.and_then(|w| w.docker) {
            None => None,
            Some(d) => Some(DockerSettings {
                socket_path: d.socket_path,
                env_allow: d.env_allow,
                timeout: bounded(
                    "workload_attestor.docker.timeout",
                    d.timeout.map(|t| t.0),
                    DEFAULT_DOCKER_TIMEOUT,
                    MAX_ATTESTOR_TIMEOUT,
                )?,
            }),
        };
        let workload_api = file.workload_api.unwrap_or_default().limits()?;
        let audit_checkpoint_interval = bounded(
            "audit.checkpoint_interval",
            file.audit.and_then(|a| a.checkpoint_interval).map(|c| c.0),
            DEFAULT_AUDIT_CHECKPOINT_INTERVAL,
            Duration::from_secs(24 * 3600),
        )?;
        if docker
            .as_ref()
            .is_some_and(|d| d.socket_path.as_os_str().is_empty())
        {
            return Err(ConfigError::Empty("workload_attestor.docker.socket_path"));
        }
        Ok(Self {
            trust_domain: TrustDomain::new(&td)?,
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            server_address,
            socket_path: args
                .socket_path
                .clone()
                .or(file.socket_path)
                .unwrap_or_else(default_socket_path),
            join_token,
            x509pop: file.node_attestor.as_ref().and_then(|n| n.x509pop.clone()),
            tpm: file.node_attestor.and_then(|n| n.tpm),
            key_source: file
                .key_manager
                .and_then(|k| k.tpm)
                .map_or(KeySource::Software, |t| KeySource::Tpm {
                    tcti: t.tcti,
                    parent: t.parent_handle,
                }),
            bootstrap,
            log_json: args.log_json,
            procfs_root: DEFAULT_PROCFS_ROOT.into(),
            hash_size_limit: DEFAULT_HASH_SIZE_LIMIT,
            jwt_leeway,
            max_clock_skew,
            workload_attestors,
            attestor_timeout,
            docker,
            telemetry_bind: args.telemetry_bind.or(file.telemetry.and_then(|t| t.bind)),
            workload_api,
            audit_checkpoint_interval,
            sds: file.sds.unwrap_or_default().settings()?,
            authz: file.authz.unwrap_or_default().settings()?,
            svid_prefetch: match &args.svid_prefetch {
                Some(text) => Some(
                    parse_duration(text)
                        .map_err(|e| ConfigError::Duration("--svid-prefetch", e.to_string()))?,
                ),
                None => file.svid_prefetch.map(|d| d.0),
            }
            .filter(|d| !d.is_zero()),
            reattest_token_file: args
                .reattest_token_file
                .clone()
                .or(file.reattest_token_file),
        })
    }
}

/// `d`, unless it is above `max` (zero allowed: no leeway, no skew).
fn at_most(name: &'static str, d: Duration, max: Duration) -> Result<Duration, ConfigError> {
    if d > max {
        return Err(ConfigError::Duration(
            name,
            format!("{}s is above the limit of {}s", d.as_secs(), max.as_secs()),
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
