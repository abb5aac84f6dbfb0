//! Why a datastore call failed. Refusals the caller can act on are their own
//! variants; a backend failure keeps its cause (`source()`) for the log.

use std::path::PathBuf;
use std::sync::Arc;

/// `Clone` so one failed group commit can fail every batch in it; the
/// causes are shared, not copied into strings.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DataStoreError {
    #[error("join token does not exist or has already been used")]
    JoinTokenNotFound,
    #[error("join token expired")]
    JoinTokenExpired,
    #[error("agent is banned")]
    AgentBanned,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A value the datastore cannot store (e.g. a time out of range).
    #[error("{0}")]
    InvalidArgument(String),
    /// The record is not in a state the change applies to.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database refused or failed a statement, or cannot be reached.
    #[error("datastore error: {0}")]
    Database(#[source] Arc<sqlx::Error>),
    #[error("migrating the datastore schema: {0}")]
    Migrate(#[source] Arc<sqlx::migrate::MigrateError>),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The task that group-commits issued serials is gone (shutting down).
    #[error("the issued-serial recorder has stopped")]
    RecorderStopped,
}

impl DataStoreError {
    /// True when the database could not be reached or answered in time,
    /// or gave way to another writer: a retry may succeed, and nothing was
    /// applied (the transaction rolled back).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) => match e.as_ref() {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                    // PostgreSQL: connection exceptions (08), shutting down
                    // (57P0x), statement timeout (57014), too many
                    // connections (53300), serialization or deadlock (40xxx).
                    code.starts_with("08")
                        || code.starts_with("57P")
                        || code.starts_with("40")
                        || code == "57014"
                        || code == "53300"
                }),
                _ => false,
            },
            Self::RecorderStopped => true,
            _ => false,
        }
    }
}

impl From<sqlx::Error> for DataStoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(Arc::new(e))
    }
}

impl From<sqlx::migrate::MigrateError> for DataStoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(Arc::new(e))
    }
}

pub type Result<T> = std::result::Result<T, DataStoreError>;
