//! Which backend a datastore URL names, and opening it: `sqlite://PATH`
//! (the embedded default, one server) or `postgres://USER@HOST[:PORT]/DB`
//! (any number of servers). A PostgreSQL password never comes from the URL
//! (it would show in `ps`, shell history and logs): from `password_file`,
//! or libpq's own `PGPASSWORD` / `~/.pgpass`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::postgres::PoolSettings;
use super::{DataStore, DataStoreError, PostgresDataStore, Result, SqliteDataStore};

/// A datastore as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum DatastoreUrl {
    Sqlite(PathBuf),
    /// The URL as given; it holds no password.
    Postgres(String),
}

impl std::fmt::Debug for DatastoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for DatastoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatastoreUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatastoreUrl::Postgres(url) => f.write_str(url),
        }
    }
}

/// Why a datastore URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("datastore URL {0:?}: expected sqlite://PATH or postgres://USER@HOST/DATABASE")]
    Scheme(String),
    #[error("datastore URL sqlite:// names no file")]
    EmptyPath,
    #[error(
        "the datastore URL must not hold a password (it would show in process lists and logs): \
         put it in a file named by [datastore] password_file"
    )]
    Password,
    #[error("datastore URL {url:?}: {reason}")]
    Invalid { url: String, reason: String },
}

impl FromStr for DatastoreUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> std::result::Result<Self, UrlError> {
        let s = s.trim();
        if let Some(path) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(UrlError::EmptyPath);
            }
            return Ok(DatastoreUrl::Sqlite(PathBuf::from(path)));
        }
        let Some(rest) = s
            .strip_prefix("postgres://")
            .or_else(|| s.strip_prefix("postgresql://"))
        else {
            return Err(UrlError::Scheme(redact(s)));
        };
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
        let query = rest.split_once('?').map_or("", |(_, q)| q);
        if userinfo.is_some_and(|u| u.contains(':'))
            || query
                .split('&')
                .any(|kv| kv.split('=').next() == Some("password"))
        {
            return Err(UrlError::Password);
        }
        PgConnectOptions::from_str(s).map_err(|e| UrlError::Invalid {
            url: s.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(DatastoreUrl::Postgres(s.to_owned()))
    }
}

/// `s` with anything that could be a password cut, for an error message.
fn redact(s: &str) -> String {
    match s.split_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => s.to_owned(),
    }
}

/// `[datastore]` settings that only PostgreSQL uses.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    pub max_connections: u32,
    /// Any statement running longer is cancelled (the call fails as
    /// `Unavailable`, its transaction rolled back).
    pub statement_timeout: Duration,
    /// How long a call waits for a connection before `Unavailable`.
    pub connect_timeout: Duration,
    /// Overrides the URL's `sslmode`.
    pub ssl_mode: Option<PgSslMode>,
    /// CA certificates (PEM) for `verify-ca` / `verify-full`.
    pub ssl_root_cert: Option<PathBuf>,
    /// A file holding the password (its first line).
    pub password_file: Option<PathBuf>,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            ssl_mode: None,
            ssl_root_cert: None,
            password_file: None,
        }
    }
}

impl PostgresSettings {
    /// The connection options for `url` with these settings applied.
    pub async fn connect_options(&self, url: &str) -> Result<PgConnectOptions> {
        let mut options = PgConnectOptions::from_str(url)?
            .application_name("signet-server")
            .options([(
                "statement_timeout",
                self.statement_timeout.as_millis().to_string(),
            )]);
        if let Some(mode) = self.ssl_mode {
            options = options.ssl_mode(mode);
        }
        if let Some(path) = &self.ssl_root_cert {
            options = options.ssl_root_cert(path);
        }
        if let Some(path) = &self.password_file {
            options = options.password(&read_password(path).await?);
        }
        Ok(options)
    }
}

/// The first line of `path`, which must not be readable by others.
async fn read_password(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| DataStoreError::Io {
        path: path.to_owned(),
        source: Arc::new(e),
    };
    let meta = tokio::fs::metadata(path).await.map_err(io)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(DataStoreError::InvalidArgument(format!(
            "password file {} is readable by other users: chmod 0600 (or 0400) it",
            path.display()
        )));
    }
    let text = tokio::fs::read_to_string(path).await.map_err(io)?;
    let password = text.lines().next().unwrap_or("").to_owned();
    if password.is_empty() {
        return Err(DataStoreError::InvalidArgument(format!(
            "password file {} is empty",
            path.display()
        )));
    }
    Ok(password)
}

/// Opens (creating and migrating as needed) the datastore `url` names.
pub async fn open(url: &DatastoreUrl, settings: &PostgresSettings) -> Result<Arc<dyn DataStore>> {
    Ok(match url {
        DatastoreUrl::Sqlite(path) => Arc::new(SqliteDataStore::open(path).await?),
        DatastoreUrl::Postgres(url) => {
            let options = settings.connect_options(url).await?;
            Arc::new(
                PostgresDataStore::open(
                    options,
                    PoolSettings {
                        max_connections: settings.max_connections,
                        acquire_timeout: settings.connect_timeout,
                    },
                )
                .await?,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(
            "sqlite:///var/lib/signet/ds.sqlite3".parse(),
            Ok(DatastoreUrl::Sqlite("/var/lib/signet/ds.sqlite3".into()))
        );
        assert_eq!(
            "sqlite://rel.db".parse(),
            Ok(DatastoreUrl::Sqlite("rel.db".into()))
        );
        assert_eq!(
            "postgres://signet@db.internal:5433/signet".parse(),
            Ok(DatastoreUrl::Postgres(
                "postgres://signet@db.internal:5433/signet".into()
            ))
        );
        assert!(matches!(
            "mysql://x@y/z".parse::<DatastoreUrl>(),
            Err(UrlError::Scheme(_))
        ));
        assert_eq!(
            "sqlite://".parse::<DatastoreUrl>(),
            Err(UrlError::EmptyPath)
        );
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_repeating_it() {
        for url in [
            "postgres://signet:hunter2@db/signet",
            "postgresql://signet@db/signet?sslmode=require&password=hunter2",
        ] {
            let e = url.parse::<DatastoreUrl>().unwrap_err();
            assert_eq!(e, UrlError::Password);
            assert!(!e.to_string().contains("hunter2"));
        }
        let e = "mongodb://u:hunter2@h/d"
            .parse::<DatastoreUrl>()
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[tokio::test]
    async fn the_password_file_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\nignored\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_password(&path).await.unwrap_err();
        assert!(e.to_string().contains("readable by other users"), "{e}");
        assert!(!e.to_string().contains("s3cret"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password(&path).await.unwrap(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_password(&path).await.is_err());
    }
}
