//! Attesting again, by itself, an agent whose SVID expired while no server
//! could renew it (an edge node's long outage; SPIRE's agents stay broken
//! until restarted, spire#1562): an x509pop or tpm agent proves its host
//! key or TPM again and keeps its agent ID; a join-token agent takes a new token from
//! `reattest_token_file` (each used once: a new token is a new agent ID,
//! and the sync starts over). With neither, the health report says what an
//! admin must do, instead of a silent retry loop.

use std::collections::BTreeSet;
use std::path::PathBuf;

use signet_core::Clock;

use super::{attest_with, Attested, JoinToken, NodeAttestError, NodeAttestorClient};
use crate::config::RuntimeConfig;
use crate::node_client::{BundleRx, ServerTrust};
use crate::storage::{Storage, StoredIdentity};

/// A token file holds one token; more than this is not one.
const MAX_TOKEN_BYTES: u64 = 4096;

/// What the agent may attest with again.
pub struct Reattest {
    pub config: RuntimeConfig,
    pub storage: Storage,
    /// Tokens from the file already tried (single-use either way).
    used: BTreeSet<String>,
}

/// Why the agent cannot attest again now, as the health report says it.
#[derive(Debug, thiserror::Error)]
pub enum ReattestError {
    #[error("no way to attest again: configure x509pop or tpm, or give --reattest-token-file and put a new join token in it")]
    NoMethod,
    #[error("the join token in {0} was used already: put a new one there (signet-server token generate)")]
    TokenUsed(PathBuf),
    #[error("no join token in {0}: put one there (signet-server token generate)")]
    NoToken(PathBuf),
    #[error("cannot read {path}: {message}")]
    TokenFile { path: PathBuf, message: String },
    #[error(transparent)]
    Attest(#[from] NodeAttestError),
}

/// The token in `path`, trimmed; `None` when the file is missing or empty.
fn read_token(path: &PathBuf) -> Result<Option<String>, ReattestError> {
    let failed = |message: String| ReattestError::TokenFile {
        path: path.clone(),
        message,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e.to_string())),
        Ok(m) if m.len() > MAX_TOKEN_BYTES => {
            return Err(failed(format!("{} bytes: not one token", m.len())))
        }
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let token = text.trim();
    Ok((!token.is_empty()).then(|| token.to_owned()))
}

/// The token the file holds now, unless missing or used.
pub fn fresh_token(path: &PathBuf, used: &BTreeSet<String>) -> Result<String, ReattestError> {
    match read_token(path)? {
        None => Err(ReattestError::NoToken(path.clone())),
        Some(t) if used.contains(&t) => Err(ReattestError::TokenUsed(path.clone())),
        Some(t) => Ok(t),
    }
}

impl Reattest {
    pub fn new(config: RuntimeConfig, storage: Storage) -> Self {
        Self {
            config,
            storage,
            used: BTreeSet::new(),
        }
    }

    /// Whether there is any way to attest again (else renewal alone).
    pub fn possible(&self) -> bool {
        self.config.x509pop.is_some()
            || self.config.tpm.is_some()
            || self.config.reattest_token_file.is_some()
    }

    /// Attests again with the host certificate or a fresh token, trusting
    /// the server by the bundle held now; saves the new identity.
    pub async fn attest(
        &mut self,
        bundle: &BundleRx,
        clock: &dyn Clock,
    ) -> Result<Attested, ReattestError> {
        let hardware = super::hardware_method(&self.config).await?;
        let method: Box<dyn NodeAttestorClient> = match (hardware, &self.config.reattest_token_file)
        {
            (Some(method), _) => method,
            (None, Some(path)) => {
                let token = fresh_token(path, &self.used)?;
                // Tried once, whatever the answer: a refused token stays
                // refused, an accepted one is spent.
                self.used.insert(token.clone());
                Box::new(JoinToken(token))
            }
            (None, None) => return Err(ReattestError::NoMethod),
        };
        let trust = ServerTrust::Bundle(bundle.clone());
        let attested = attest_with(&self.config, method.as_ref(), trust, clock).await?;
        self.storage
            .save_identity(&StoredIdentity {
                key: attested.svid.key.stored(),
                chain: attested.svid.x509.chain.clone(),
            })
            .map_err(NodeAttestError::from)?;
        self.storage
            .save_bundle(&attested.bundle)
            .map_err(NodeAttestError::from)?;
        tracing::info!(spiffe_id = %attested.svid.x509.spiffe_id, "attested again after the agent SVID expired");
        Ok(attested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_gives_each_token_once_and_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let mut used = BTreeSet::new();
        assert!(matches!(
            fresh_token(&path, &used),
            Err(ReattestError::NoToken(_))
        ));
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(
            fresh_token(&path, &used),
            Err(ReattestError::NoToken(_))
        ));
        std::fs::write(&path, "abc123\n").unwrap();
        assert_eq!(fresh_token(&path, &used).unwrap(), "abc123");
        used.insert("abc123".into());
        let err = fresh_token(&path, &used).unwrap_err();
        assert!(err.to_string().contains("used already"), "{err}");
        std::fs::write(&path, "x".repeat(5000)).unwrap();
        assert!(matches!(
            fresh_token(&path, &used),
            Err(ReattestError::TokenFile { .. })
        ));
    }
}
