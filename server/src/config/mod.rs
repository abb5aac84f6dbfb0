//! Server configuration: the TOML file (unknown keys refused), the command-line
//! overrides, and the typed runtime config they become. Defaults live here once.

mod anomaly;
mod audit;
mod dashboard;
mod datastore;
mod federation;
mod key_manager;
mod node_attestor;
mod oidc;
mod rate_limit;
mod upstream_signet;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signet_core::TrustDomain;

pub const DEFAULT_TRUST_DOMAIN: &str = "example.org";
pub const DEFAULT_DATA_DIR: &str = ".data/server";
pub const DEFAULT_BIND: &str = "127.0.0.1:8081";
pub const DEFAULT_CA_TTL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_X509_SVID_TTL: Duration = Duration::from_secs(3600);
pub const DEFAULT_JWT_SVID_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_JOIN_TOKEN_TTL: Duration = Duration::from_secs(600);
/// How far notBefore is moved into the past, for clock skew between hosts.
pub const NOT_BEFORE_BACKDATE: Duration = Duration::from_secs(30);
/// Node API connections one source address may hold (agents hold one or
/// two each; many behind one NAT address still fit).
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 1024;
/// Node API connections in all; the open-file limit may lower it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bounds of the duration settings, so that no setting can push a
/// certificate's times out of range; above them is refused naming the key.
pub const MAX_CA_TTL: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
pub const MAX_SVID_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
pub const MAX_JOIN_TOKEN_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
pub const MAX_BACKDATE: Duration = Duration::from_secs(24 * 3600);
pub const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(300);
pub const MAX_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The admin socket when nothing names one: `/run/signet-server/admin.sock`
/// for root (where the packaged unit's `RuntimeDirectory=` puts it), else
/// under `$XDG_RUNTIME_DIR` (see [`signet_runtime::dirs::runtime_dir`]).
pub fn default_admin_socket() -> PathBuf {
    signet_runtime::dirs::runtime_dir("signet-server").join("admin.sock")
}

pub use anomaly::{AnomalyAction, AnomalyActions, AnomalyConfig, AnomalySettings};
pub use audit::{AuditConfig, AuditSettings, CHECKPOINT_FILE};
pub use dashboard::DashboardConfig;
pub use datastore::{DatastoreConfig, UpstreamAuthorityConfig, UpstreamDiskConfig, DATASTORE_FILE};
pub use federation::{
    BundleEndpointConfig, FederatesWithConfig, FederationConfig, FederationSettings,
};
pub use key_manager::{KeyManagerConfig, KeyManagerSettings, Pkcs11Config};
pub use node_attestor::{NodeAttestorConfig, TpmConfig, X509PopConfig};
pub use oidc::{OidcConfig, OidcSettings, DISCOVERY_PATH};
pub use rate_limit::{RateLimitConfig, RateLimits};
pub use signet_core::duration::ConfigDuration;

/// The TOML file, every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub trust_domain: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub admin_socket: Option<PathBuf>,
    pub ca_ttl: Option<ConfigDuration>,
    pub default_x509_svid_ttl: Option<ConfigDuration>,
    pub default_jwt_svid_ttl: Option<ConfigDuration>,
    pub join_token_ttl: Option<ConfigDuration>,
    /// How far notBefore of issued SVIDs is moved into the past (clock skew).
    pub not_before_backdate: Option<ConfigDuration>,
    pub log_json: Option<bool>,
    /// Fraction of an authority's life after which the next is prepared.
    pub authority_prepare_at: Option<f64>,
    /// Fraction of an authority's life left when the next is activated.
    pub authority_activate_at: Option<f64>,
    pub node_attestor: Option<NodeAttestorConfig>,
    pub telemetry: Option<TelemetryConfig>,
    pub node_api: Option<NodeApiConfig>,
    pub datastore: Option<DatastoreConfig>,
    pub upstream_authority: Option<UpstreamAuthorityConfig>,
    pub key_manager: Option<KeyManagerConfig>,
    pub federation: Option<FederationConfig>,
    pub audit: Option<AuditConfig>,
    pub rate_limit: Option<RateLimitConfig>,
    pub anomaly: Option<AnomalyConfig>,
    pub dashboard: Option<DashboardConfig>,
    pub oidc: Option<OidcConfig>,
    /// The type of new JWT keys: "ec-p256" (default) or "rsa-2048".
    pub jwt_key_type: Option<signet_core::jwt::JwtKeyType>,
}

/// `[node_api]`: what agents (and anyone reaching the port) may hold open.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeApiConfig {
    pub max_connections_per_address: Option<usize>,
    pub max_connections: Option<usize>,
    pub tls_handshake_timeout: Option<ConfigDuration>,
    pub first_request_timeout: Option<ConfigDuration>,
    pub idle_timeout: Option<ConfigDuration>,
}

/// The Node API's connection bounds, decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeApiLimits {
    pub max_connections_per_address: usize,
    pub max_connections: usize,
    pub tls_handshake_timeout: Duration,
    /// After the handshake: to the first request, and with none open.
    pub timeouts: signet_runtime::conn::Timeouts,
}

impl Default for NodeApiLimits {
    fn default() -> Self {
        Self {
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            timeouts: signet_runtime::conn::Timeouts::default(),
        }
    }
}

impl NodeApiConfig {
    fn limits(self) -> Result<NodeApiLimits, ConfigError> {
        let d = NodeApiLimits::default();
        let count = |v: Option<usize>, default: usize, name: &'static str| match v {
            Some(0) => Err(ConfigError::ZeroCount(name)),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        Ok(NodeApiLimits {
            max_connections_per_address: count(
                self.max_connections_per_address,
                d.max_connections_per_address,
                "node_api.max_connections_per_address",
            )?,
            max_connections: count(
                self.max_connections,
                d.max_connections,
                "node_api.max_connections",
            )?,
            tls_handshake_timeout: bounded(
                self.tls_handshake_timeout,
                d.tls_handshake_timeout,
                "node_api.tls_handshake_timeout",
                MAX_HANDSHAKE_TIMEOUT,
            )?,
            timeouts: signet_runtime::conn::Timeouts {
                first_request: bounded(
                    self.first_request_timeout,
                    d.timeouts.first_request,
                    "node_api.first_request_timeout",
                    MAX_FIRST_REQUEST_TIMEOUT,
                )?,
                idle: bounded(
                    self.idle_timeout,
                    d.timeouts.idle,
                    "node_api.idle_timeout",
                    MAX_IDLE_TIMEOUT,
                )?,
            },
        })
    }
}

/// `v` (or `default`): above zero and at most `max`.
fn bounded(
    v: Option<ConfigDuration>,
    default: Duration,
    name: &'static str,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = v.map(|c| c.0).unwrap_or(default);
    if d.is_zero() {
        return Err(ConfigError::ZeroDuration(name));
    }
    at_most(d, name, max)
}

fn at_most(d: Duration, name: &'static str, max: Duration) -> Result<Duration, ConfigError> {
    if d > max {
        return Err(ConfigError::TooLong {
            name,
            secs: d.as_secs(),
            max: max.as_secs(),
        });
    }
    Ok(d)
}

/// `[telemetry]`: where `/live`, `/ready` and `/metrics` are served.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub bind: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.to_path_buf(), e.to_string()))?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse(_, msg) => ConfigError::Parse(path.to_path_buf(), msg),
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(PathBuf::new(), e.to_string()))
    }

    /// Flags win over the file: any `Some` in `flags` replaces the file's value.
    pub fn merge(self, flags: FileConfig) -> FileConfig {
        FileConfig {
            trust_domain: flags.trust_domain.or(self.trust_domain),
            data_dir: flags.data_dir.or(self.data_dir),
            bind: flags.bind.or(self.bind),
            admin_socket: flags.admin_socket.or(self.admin_socket),
            ca_ttl: flags.ca_ttl.or(self.ca_ttl),
            default_x509_svid_ttl: flags.default_x509_svid_ttl.or(self.default_x509_svid_ttl),
            default_jwt_svid_ttl: flags.default_jwt_svid_ttl.or(self.default_jwt_svid_ttl),
            join_token_ttl: flags.join_token_ttl.or(self.join_token_ttl),
            not_before_backdate: flags.not_before_backdate.or(self.not_before_backdate),
            log_json: flags.log_json.or(self.log_json),
            authority_prepare_at: flags.authority_prepare_at.or(self.authority_prepare_at),
            authority_activate_at: flags.authority_activate_at.or(self.authority_activate_at),
            node_attestor: flags.node_attestor.or(self.node_attestor),
            node_api: flags.node_api.or(self.node_api),
            // `--datastore` sets the URL; the rest of the table stays.
            datastore: match (flags.datastore, self.datastore) {
                (Some(DatastoreConfig { url: Some(url), .. }), file) => Some(DatastoreConfig {
                    url: Some(url),
                    ..file.unwrap_or_default()
                }),
                (_, file) => file,
            },
            upstream_authority: flags.upstream_authority.or(self.upstream_authority),
            key_manager: flags.key_manager.or(self.key_manager),
            federation: flags.federation.or(self.federation),
            audit: flags.audit.or(self.audit),
            rate_limit: flags.rate_limit.or(self.rate_limit),
            anomaly: flags.anomaly.or(self.anomaly),
            dashboard: flags.dashboard.or(self.dashboard),
            oidc: flags.oidc.or(self.oidc),
            jwt_key_type: flags.jwt_key_type.or(self.jwt_key_type),
            telemetry: match (flags.telemetry, self.telemetry) {
                (Some(TelemetryConfig { bind: Some(b) }), _) => {
                    Some(TelemetryConfig { bind: Some(b) })
                }
                (_, file) => file,
            },
        }
    }
}

/// `signet-server validate`: the file parses, every key is known and the
/// values convert into a runtime config (the x509pop bundle included).
/// Errors read `FILE:LINE:COL: message`.
pub fn validate_file(path: &Path) -> Result<RuntimeConfig, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let file: FileConfig = toml::from_str(&text).map_err(|e| {
        let (line, col) = e.span().map_or((1, 1), |span| line_col(&text, span.start));
        format!("{shown}:{line}:{col}: {}", e.message().trim_end())
    })?;
    let config = RuntimeConfig::try_from(file).map_err(|e| {
        let (line, col) = e
            .key()
            .and_then(|k| key_offset(&text, k))
            .map_or((1, 1), |o| line_col(&text, o));
        format!("{shown}:{line}:{col}: {e}")
    })?;
    for bundle in config
        .x509pop_ca_bundle
        .iter()
        .chain(config.tpm.iter().map(|t| &t.ca_bundle_path))
    {
        crate::attest::x509pop::load_bundle(bundle).map_err(|e| {
            let (line, col) =
                key_offset(&text, "ca_bundle_path").map_or((1, 1), |o| line_col(&text, o));
            format!("{shown}:{line}:{col}: {e}")
        })?;
    }
    Ok(config)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Byte offset of the line that sets `key` (`key = ...`), if any.
fn key_offset(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return Some(offset + (line.len() - trimmed.len()));
            }
        }
        offset += line.len();
    }
    None
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0:?}: {1}")]
    Read(PathBuf, String),
    #[error("invalid config file {0:?}: {1}")]
    Parse(PathBuf, String),
    #[error("invalid trust_domain {0:?}: {1}")]
    TrustDomain(String, signet_core::SpiffeIdError),
    #[error("invalid bind address {0:?}: {1}")]
    Bind(String, String),
    #[error("{0} must be longer than zero")]
    ZeroDuration(&'static str),
    #[error("{} of {secs}s is above the limit of {max}s", setting(name))]
    TooLong {
        name: &'static str,
        secs: u64,
        max: u64,
    },
    #[error("{0} must be at least 1")]
    ZeroCount(&'static str),
    #[error("{0} must be a fraction between 0 and 1, got {1}")]
    Fraction(&'static str, f64),
    #[error("invalid dashboard bind address {0:?}: {1}")]
    DashboardBind(String, String),
    #[error("invalid telemetry bind address {0:?}: {1}")]
    TelemetryBind(String, String),
    #[error(transparent)]
    Datastore(crate::datastore::open::UrlError),
    #[error("datastore.sslmode {0:?}: expected disable, allow, prefer, require, verify-ca or verify-full")]
    SslMode(String),
    #[error("{0}")]
    Federation(String),
    #[error("audit.{0}: {1}")]
    Audit(&'static str, String),
    #[error("anomaly.{0}: {1}")]
    Anomaly(&'static str, String),
    #[error("rate_limit.{0}: {1}")]
    RateLimit(&'static str, String),
    #[error("node_attestor.{0}")]
    NodeAttestor(String),
    #[error("oidc.{0}: {1}")]
    Oidc(&'static str, String),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("upstream_authority: {0}")]
    Upstream(&'static str),
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
}

impl ConfigError {
    /// The config key a value error is about, to point at its line.
    pub fn key(&self) -> Option<&'static str> {
        Some(match self {
            ConfigError::TrustDomain(..) => "trust_domain",
            ConfigError::Bind(..) => "bind",
            ConfigError::ZeroDuration(k) => k.rsplit('.').next().unwrap_or(k),
            // `node_api.idle_timeout` is on the line `idle_timeout = ...`.
            ConfigError::TooLong { name, .. } => name.rsplit('.').next().unwrap_or(name),
            ConfigError::ZeroCount(k) | ConfigError::Empty(k) => k.rsplit('.').next().unwrap_or(k),
            ConfigError::Fraction(k, _) => k.split(' ').next().unwrap_or(k),
            ConfigError::TelemetryBind(..) | ConfigError::DashboardBind(..) => "bind",
            ConfigError::Datastore(..) => "url",
            ConfigError::SslMode(..) => "sslmode",
            ConfigError::Federation(..) => "federation",
            ConfigError::NodeAttestor(..) => "pcrs",
            ConfigError::Upstream(..) => "upstream_authority",
            ConfigError::Invalid(k, _) => k.rsplit('.').next().unwrap_or(k),
            // `rate_limit.attestation: ...` is on the line `attestation = ...`.
            ConfigError::RateLimit(k, _)
            | ConfigError::Anomaly(k, _)
            | ConfigError::Audit(k, _)
            | ConfigError::Oidc(k, _) => k,
            ConfigError::Read(..) | ConfigError::Parse(..) => return None,
        })
    }
}

/// A setting as messages name it: a top-level key with its flag
/// (`ca_ttl (--ca-ttl)`), a section's key by its path.
fn setting(name: &str) -> String {
    if name.contains('.') {
        name.to_owned()
    } else {
        format!("{name} (--{})", name.replace('_', "-"))
    }
}

/// What the server runs on, every value decided.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub trust_domain: TrustDomain,
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub admin_socket: PathBuf,
    pub ca_ttl: Duration,
    pub default_x509_svid_ttl: Duration,
    pub default_jwt_svid_ttl: Duration,
    pub join_token_ttl: Duration,
    pub not_before_backdate: Duration,
    pub log_json: bool,
    /// When authorities are prepared and activated.
    pub authority_schedule: crate::ca::Schedule,
    /// CA bundle for x509pop node attestation; x509pop is off when `None`.
    pub x509pop_ca_bundle: Option<PathBuf>,
    /// `[node_attestor.tpm]`; the tpm attestor is off when `None`.
    pub tpm: Option<TpmConfig>,
    /// `/live`, `/ready`, `/metrics`; no listener when `None`.
    pub telemetry_bind: Option<SocketAddr>,
    pub node_api: NodeApiLimits,
    /// `[datastore] url`; `None`: SQLite in the data dir (see
    /// [`RuntimeConfig::datastore_url`]).
    pub datastore: Option<crate::datastore::DatastoreUrl>,
    pub postgres: crate::datastore::PostgresSettings,
    /// The root each new X.509 CA is an intermediate of; self-signed CAs
    /// when `None`.
    pub upstream: Option<crate::ca::upstream::UpstreamSettings>,
    /// Where the CA and JWT private keys live.
    pub key_manager: KeyManagerSettings,
    /// The bundle endpoint, peers' refresh bounds, relationships from the file.
    pub federation: FederationSettings,
    /// Audit checkpoints: how often, and the file outside the datastore.
    pub audit: AuditSettings,
    /// Token buckets per source address and per agent.
    pub rate_limits: RateLimits,
    /// The anomaly detectors' thresholds and actions.
    pub anomaly: AnomalySettings,
    /// The dashboard's HTTPS address; off when `None`.
    pub dashboard_bind: Option<SocketAddr>,
    /// The OIDC issuer and its discovery endpoint; off when `None`.
    pub oidc: Option<OidcSettings>,
    pub jwt_key_type: signet_core::jwt::JwtKeyType,
}

impl RuntimeConfig {
    /// The embedded defaults of the contract (no file, no flags).
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::try_from(FileConfig::default())
    }

    /// The datastore: the configured URL, else `datastore.sqlite3` in the
    /// data dir.
    pub fn datastore_url(&self) -> crate::datastore::DatastoreUrl {
        self.datastore.clone().unwrap_or_else(|| {
            crate::datastore::DatastoreUrl::Sqlite(self.data_dir.join(DATASTORE_FILE))
        })
    }
}

impl TryFrom<FileConfig> for RuntimeConfig {
    type Error = ConfigError;

    fn try_from(f: FileConfig) -> Result<Self, ConfigError> {
        let td_text = f
            .trust_domain
            .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_owned());
        let trust_domain =
            TrustDomain::new(&td_text).map_err(|e| ConfigError::TrustDomain(td_text.clone(), e))?;
        let bind_text = f.bind.unwrap_or_else(|| DEFAULT_BIND.to_owned());
        let bind = bind_text
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::Bind(bind_text.clone(), e.to_string()))?;
        let telemetry_bind = match f.telemetry.and_then(|t| t.bind) {
            None => None,
            Some(text) => Some(
                text.parse::<SocketAddr>()
                    .map_err(|e| ConfigError::TelemetryBind(text.clone(), e.to_string()))?,
            ),
        };
        let ttl = |v: Option<ConfigDuration>, default: Duration, name: &'static str, max| {
            bounded(v, default, name, max)
        };
        let data_dir = f
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let (datastore, postgres) = f.datastore.unwrap_or_default().decide()?;
        let audit = f.audit.unwrap_or_default().settings(&data_dir)?;
        Ok(RuntimeConfig {
            trust_domain,
            data_dir,
            audit,
            rate_limits: f.rate_limit.unwrap_or_default().decide()?,
            anomaly: f.anomaly.unwrap_or_default().decide()?,
            dashboard_bind: f.dashboard.unwrap_or_default().bind()?,
            oidc: f.oidc.unwrap_or_default().decide()?,
            jwt_key_type: f.jwt_key_type.unwrap_or_default(),
            datastore,
            postgres,
            upstream: f
                .upstream_authority
                .map(UpstreamAuthorityConfig::decide)
                .transpose()?
                .flatten(),
            key_manager: f.key_manager.unwrap_or_default().decide()?,
            federation: f.federation.unwrap_or_default().decide()?,
            bind,
            admin_socket: f.admin_socket.unwrap_or_else(default_admin_socket),
            ca_ttl: ttl(f.ca_ttl, DEFAULT_CA_TTL, "ca_ttl", MAX_CA_TTL)?,
            default_x509_svid_ttl: ttl(
                f.default_x509_svid_ttl,
                DEFAULT_X509_SVID_TTL,
                "default_x509_svid_ttl",
                MAX_SVID_TTL,
            )?,
            default_jwt_svid_ttl: ttl(
                f.default_jwt_svid_ttl,
                DEFAULT_JWT_SVID_TTL,
                "default_jwt_svid_ttl",
                MAX_SVID_TTL,
            )?,
            join_token_ttl: ttl(
                f.join_token_ttl,
                DEFAULT_JOIN_TOKEN_TTL,
                "join_token_ttl",
                MAX_JOIN_TOKEN_TTL,
            )?,
            // Zero is allowed: hosts with trusted clocks may not want it.
            not_before_backdate: at_most(
                f.not_before_backdate
                    .map(|c| c.0)
                    .unwrap_or(NOT_BEFORE_BACKDATE),
                "not_before_backdate",
                MAX_BACKDATE,
            )?,
            log_json: f.log_json.unwrap_or(false),
            authority_schedule: schedule(f.authority_prepare_at, f.authority_activate_at)?,
            x509pop_ca_bundle: f
                .node_attestor
                .as_ref()
                .and_then(|n| n.x509pop.clone())
                .map(|x| x.ca_bundle_path),
            tpm: f
                .node_attestor
                .and_then(|n| n.tpm)
                .map(TpmConfig::checked)
                .transpose()?,
            telemetry_bind,
            node_api: f.node_api.unwrap_or_default().limits()?,
        })
    }
}

fn schedule(
    prepare: Option<f64>,
    activate: Option<f64>,
) -> Result<crate::ca::Schedule, ConfigError> {
    let d = crate::ca::Schedule::default();
    let check = |v: Option<f64>, default: f64, name: &'static str| {
        let v = v.unwrap_or(default);
        if v.is_finite() && v > 0.0 && v < 1.0 {
            Ok(v)
        } else {
            Err(ConfigError::Fraction(name, v))
        }
    };
    let prepare_at = check(prepare, d.prepare_at, "authority_prepare_at")?;
    let activate_at = check(activate, d.activate_at, "authority_activate_at")?;
    if prepare_at + activate_at > 1.0 {
        return Err(ConfigError::Fraction(
            "authority_prepare_at + authority_activate_at",
            prepare_at + activate_at,
        ));
    }
    Ok(crate::ca::Schedule {
        prepare_at,
        activate_at,
    })
}

#[cfg(test)]
mod tests;
