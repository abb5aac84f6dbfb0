//! This server's id among the servers sharing a datastore: made once (a
//! random UUID), kept in the data dir, so a restart is the same server and
//! keeps its authorities. `signet-server server list` shows it.

use std::path::Path;

/// The file in the data dir.
pub const SERVER_ID_FILE: &str = "server_id";

#[derive(Debug, thiserror::Error)]
pub enum ServerIdError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not hold a server id (1 to 64 letters, digits, '-', '_' or '.')")]
    Malformed { path: String },
}

fn valid(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The id stored in `data_dir`, or a new one stored there (0600).
pub async fn load_or_create(data_dir: &Path) -> Result<String, ServerIdError> {
    let path = data_dir.join(SERVER_ID_FILE);
    let io = |source| ServerIdError::Io {
        path: path.display().to_string(),
        source,
    };
    match tokio::fs::read_to_string(&path).await {
        Ok(text) => {
            let id = text.trim();
            if !valid(id) {
                return Err(ServerIdError::Malformed {
                    path: path.display().to_string(),
                });
            }
            Ok(id.to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            let dir = data_dir.to_owned();
            let text = format!("{id}\n");
            tokio::task::spawn_blocking(move || {
                signet_runtime::fs::write_atomic(&dir.join(SERVER_ID_FILE), text.as_bytes(), 0o600)
            })
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).await.unwrap();
        assert!(valid(&first));
        assert_eq!(load_or_create(dir.path()).await.unwrap(), first);
        std::fs::write(dir.path().join(SERVER_ID_FILE), "no spaces please\n").unwrap();
        assert!(matches!(
            load_or_create(dir.path()).await,
            Err(ServerIdError::Malformed { .. })
        ));
    }
}
