//! `[datastore]` and `[upstream_authority.disk]`: where the server keeps its
//! state (SQLite embedded by default, PostgreSQL for several servers) and
//! the root its CA chains to.

use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;
use sqlx::postgres::PgSslMode;

use super::{bounded, ConfigDuration, ConfigError};
use crate::ca::upstream::{UpstreamDisk, UpstreamSettings};
use crate::datastore::{DatastoreUrl, PostgresSettings};

/// The SQLite file in the data dir when no URL is configured.
pub const DATASTORE_FILE: &str = "datastore.sqlite3";
pub const MAX_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);
pub const MAX_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// `[datastore]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DatastoreConfig {
    /// `sqlite://PATH` or `postgres://USER@HOST[:PORT]/DB` (no password).
    pub url: Option<String>,
    /// A file holding the PostgreSQL password (0600).
    pub password_file: Option<PathBuf>,
    /// PostgreSQL connections this server may hold.
    pub max_connections: Option<u32>,
    /// Statements running longer are cancelled.
    pub statement_timeout: Option<ConfigDuration>,
    /// How long a call waits for a connection.
    pub connect_timeout: Option<ConfigDuration>,
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    pub sslmode: Option<String>,
    /// CA certificates (PEM) for `verify-ca` and `verify-full`.
    pub sslrootcert: Option<PathBuf>,
}

/// `[upstream_authority]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAuthorityConfig {
    pub disk: Option<UpstreamDiskConfig>,
    pub signet: Option<super::upstream_signet::UpstreamSignetConfig>,
}

/// `[upstream_authority.disk]`: a root certificate and its key (PEM).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDiskConfig {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl UpstreamAuthorityConfig {
    /// At most one upstream signs this server's CAs.
    pub fn decide(self) -> Result<Option<UpstreamSettings>, ConfigError> {
        match (self.disk, self.signet) {
            (Some(_), Some(_)) => Err(ConfigError::Upstream(
                "disk and signet are both set; one upstream signs the CAs",
            )),
            (Some(d), None) => Ok(Some(UpstreamSettings::Disk(UpstreamDisk {
                cert_path: d.cert_path,
                key_path: d.key_path,
            }))),
            (None, Some(s)) => Ok(Some(UpstreamSettings::Signet(s.decide()?))),
            (None, None) => Ok(None),
        }
    }
}

impl DatastoreConfig {
    /// The URL (`None`: the data dir's SQLite file) and the PostgreSQL
    /// settings, checked.
    pub fn decide(self) -> Result<(Option<DatastoreUrl>, PostgresSettings), ConfigError> {
        let url = self
            .url
            .map(|text| DatastoreUrl::from_str(&text).map_err(ConfigError::Datastore))
            .transpose()?;
        let d = PostgresSettings::default();
        let max_connections = match self.max_connections {
            Some(0) => return Err(ConfigError::ZeroCount("datastore.max_connections")),
            Some(n) => n,
            None => d.max_connections,
        };
        let ssl_mode = self
            .sslmode
            .map(|m| PgSslMode::from_str(&m).map_err(|_| ConfigError::SslMode(m.clone())))
            .transpose()?;
        Ok((
            url,
            PostgresSettings {
                max_connections,
                statement_timeout: bounded(
                    self.statement_timeout,
                    d.statement_timeout,
                    "datastore.statement_timeout",
                    MAX_STATEMENT_TIMEOUT,
                )?,
                connect_timeout: bounded(
                    self.connect_timeout,
                    d.connect_timeout,
                    "datastore.connect_timeout",
                    MAX_CONNECT_TIMEOUT,
                )?,
                ssl_mode,
                ssl_root_cert: self.sslrootcert,
                password_file: self.password_file,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FileConfig, RuntimeConfig};
    use crate::datastore::DatastoreUrl;

    #[test]
    fn sqlite_in_the_data_dir_unless_a_url_is_set_and_the_flag_keeps_the_table() {
        let mut c =
            RuntimeConfig::try_from(FileConfig::parse("data_dir = \"/d\"").unwrap()).unwrap();
        assert_eq!(
            c.datastore_url(),
            DatastoreUrl::Sqlite("/d/datastore.sqlite3".into())
        );
        // Decided when opened: a data dir changed later is the one used.
        c.data_dir = "/e".into();
        assert_eq!(
            c.datastore_url(),
            DatastoreUrl::Sqlite("/e/datastore.sqlite3".into())
        );
        let file = FileConfig::parse(
            "[datastore]\nurl = \"postgres://a@h/one\"\nmax_connections = 4\nstatement_timeout = \"2s\"\nsslmode = \"verify-full\"\npassword_file = \"/p\"\n",
        )
        .unwrap();
        let flags = FileConfig {
            datastore: Some(super::DatastoreConfig {
                url: Some("postgres://b@h/two".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = RuntimeConfig::try_from(file.merge(flags)).unwrap();
        assert_eq!(c.datastore_url().to_string(), "postgres://b@h/two");
        assert_eq!(c.postgres.max_connections, 4);
        assert_eq!(c.postgres.statement_timeout.as_secs(), 2);
        assert!(c.postgres.ssl_mode.is_some());
        assert_eq!(c.postgres.password_file, Some("/p".into()));
    }

    #[test]
    fn bad_datastore_settings_are_refused_naming_them() {
        let err = |text: &str| {
            RuntimeConfig::try_from(FileConfig::parse(text).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(err("[datastore]\nurl = \"postgres://u:pw@h/d\"").contains("password_file"));
        assert!(!err("[datastore]\nurl = \"postgres://u:pw@h/d\"").contains("pw@"));
        assert!(err("[datastore]\nurl = \"mysql://h/d\"").contains("expected sqlite://PATH"));
        assert!(err("[datastore]\nsslmode = \"sometimes\"").starts_with("datastore.sslmode"));
        assert_eq!(
            err("[datastore]\nmax_connections = 0"),
            "datastore.max_connections must be at least 1"
        );
        assert!(FileConfig::parse("[datastore]\npassword = \"x\"").is_err());
    }
}
