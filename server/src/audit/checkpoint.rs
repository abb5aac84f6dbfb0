//! Checkpoints: once `checkpoint_every` records came since the last, or
//! `checkpoint_interval` after it if any did, this server signs the chain's
//! head `(seq, hash)` with its audit key, stores the checkpoint in the
//! datastore and appends it to the checkpoint file outside it. A rewrite
//! of the datastore, however consistent, then disagrees with a checkpoint
//! it cannot reach; a cut tail leaves a checkpoint past the last record.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};
use signet_core::Clock;
use tokio::sync::watch;

use super::Checkpoint;
use crate::config::AuditSettings;
use crate::datastore::DataStore;

/// The audit key's file in the data dir (PKCS#8, 0600).
pub const KEY_FILE: &str = "audit_key.pk8";
/// How often the head is looked at.
const POLL: Duration = Duration::from_secs(1);

/// This server's checkpoint signing key.
pub struct AuditKey {
    pair: Ed25519KeyPair,
    public_b64: String,
    key_id: String,
}

impl AuditKey {
    /// The data dir's key, made and stored (0600) on first use. Blocking:
    /// run it off the async workers.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(KEY_FILE);
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = ring::rand::SystemRandom::new();
                let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| anyhow::anyhow!("could not generate the audit key"))?;
                signet_runtime::fs::write_atomic(&path, doc.as_ref(), 0o600)
                    .with_context(|| format!("writing {}", path.display()))?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 key", path.display()))?;
        let public = pair.public_key().as_ref();
        Ok(Self {
            public_b64: base64::engine::general_purpose::STANDARD.encode(public),
            key_id: hex::encode(ring::digest::digest(&ring::digest::SHA256, public)),
            pair,
        })
    }

    pub fn sign(&self, seq: u64, hash: &str, time_ms: i64, server_id: &str) -> Checkpoint {
        let sig = self
            .pair
            .sign(&Checkpoint::message(seq, hash, time_ms, server_id));
        Checkpoint {
            seq,
            hash: hash.to_owned(),
            time_ms,
            server_id: server_id.to_owned(),
            key_id: self.key_id.clone(),
            public_key: self.public_b64.clone(),
            signature: base64::engine::general_purpose::STANDARD.encode(sig.as_ref()),
        }
    }
}

/// Appends `c` as one JSON line to `path` (created 0600) and syncs it.
fn append_line(path: &Path, c: &Checkpoint) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(c)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(&line)?;
    f.sync_data()
}

/// Checkpoints until `stop` turns true, then once more if records came.
pub async fn run(
    ds: Arc<dyn DataStore>,
    key: Arc<AuditKey>,
    settings: AuditSettings,
    server_id: String,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_seq = match ds.audit_checkpoints().await {
        Ok(all) => all.last().map_or(0, |c| c.seq),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the audit checkpoints; starting from none");
            0
        }
    };
    let mut last_at = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        let head = match ds.audit_head().await {
            Ok(Some(head)) => head,
            Ok(None) => {
                if stopping {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the audit chain's head");
                if stopping {
                    return;
                }
                continue;
            }
        };
        let due = head.seq > last_seq
            && (stopping
                || head.seq - last_seq >= settings.checkpoint_every
                || last_at.elapsed() >= settings.checkpoint_interval);
        if due {
            let time_ms = signet_core::clock::unix_seconds(clock.now()).saturating_mul(1000);
            let c = key.sign(head.seq, &head.hash, time_ms, &server_id);
            if let Err(e) = write(ds.as_ref(), &settings.checkpoint_file, c).await {
                tracing::error!(error = %e, seq = head.seq, "could not write an audit checkpoint");
            } else {
                tracing::debug!(seq = head.seq, "audit checkpoint written");
                last_seq = head.seq;
                last_at = tokio::time::Instant::now();
            }
        }
        if stopping {
            return;
        }
    }
}

async fn write(ds: &dyn DataStore, file: &Path, c: Checkpoint) -> anyhow::Result<()> {
    ds.add_audit_checkpoint(c.clone()).await?;
    let file: PathBuf = file.to_path_buf();
    tokio::task::spawn_blocking(move || append_line(&file, &c))
        .await?
        .with_context(|| "appending to the checkpoint file")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_kept_private_and_signs_verifiably() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = AuditKey::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = AuditKey::load_or_create(dir.path()).unwrap();
        assert_eq!(key.key_id, again.key_id);
        let c = key.sign(7, "ab", 1000, "s1");
        let public = base64::engine::general_purpose::STANDARD
            .decode(&c.public_key)
            .unwrap();
        let sig = base64::engine::general_purpose::STANDARD
            .decode(&c.signature)
            .unwrap();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
            .verify(&Checkpoint::message(7, "ab", 1000, "s1"), &sig)
            .unwrap();
    }
}
