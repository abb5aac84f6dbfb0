//! The workload SVID cache on disk, so a restarted agent serves what it held
//! before it reaches the server. One JSON file (mode 0600: it holds private
//! keys), rewritten atomically by one task a short while after the cache
//! changes, so bursts of changes cost one write and readers never wait.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use signet_core::clock::from_unix_seconds;
use signet_core::jwt::{Jwk, JwtPublicKey};
use signet_core::x509::cert_info;
use signet_core::{RegistrationEntry, Selector, SpiffeId, TrustDomain, X509Svid};
use tokio::sync::watch;

use super::state::{Revocations, Snapshot, Svid, Tainted};
use std::io::Write;

use crate::storage::write_atomic_with;
use encode::{encode_to, Digest};

mod encode;

pub const CACHE_FILE: &str = "workload_cache.json";
const VERSION: u32 = 1;
/// Changes closer together than this are written once.
const COALESCE: Duration = Duration::from_millis(200);
/// A cache that never pauses (a cold start publishes every 100 ms) is still
/// written this long after it first changed: writing a 10k-entry cache
/// every 200 ms cost an eighth of a cold start's CPU on the agent.
const MAX_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] crate::storage::StorageError),
    #[error("cannot encode the cache: {0}")]
    Encode(String),
}

/// What a previous run left, parsed and checked.
#[derive(Debug, Default)]
pub struct Restored {
    pub revision: u64,
    pub bundle: Vec<Vec<u8>>,
    pub jwt_keys: Vec<(String, JwtPublicKey)>,
    pub crls: Vec<Vec<u8>>,
    pub revocations: Revocations,
    pub tainted: Tainted,
    pub entries: Vec<(RegistrationEntry, Option<RestoredSvid>)>,
}

#[derive(Debug)]
pub struct RestoredSvid {
    pub svid: Svid,
    /// Rotation counts from here after a restart.
    pub not_before: SystemTime,
}

#[derive(Deserialize)]
struct CacheFile {
    version: u32,
    trust_domain: String,
    revision: u64,
    bundle: Vec<String>,
    jwt_keys: Vec<Jwk>,
    crls: Vec<String>,
    revoked_x509_serials: Vec<(String, i64)>,
    revoked_jwt_ids: Vec<(String, i64)>,
    tainted_x509: Vec<String>,
    tainted_jwt_kids: Vec<String>,
    entries: Vec<EntryFile>,
}

#[derive(Deserialize)]
struct EntryFile {
    id: String,
    spiffe_id: String,
    parent_id: String,
    selectors: Vec<String>,
    x509_svid_ttl: Option<u64>,
    jwt_svid_ttl: Option<u64>,
    dns_names: Vec<String>,
    hint: String,
    admin: bool,
    downstream: bool,
    revision: u64,
    svid: Option<SvidFile>,
}

#[derive(Deserialize)]
struct SvidFile {
    chain: Vec<String>,
    key_pkcs8: String,
    authority_id: String,
}

pub fn cache_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CACHE_FILE)
}

/// The JSON document for `snapshot`, in memory (tests and tools; the agent
/// streams it to disk with [`encode_to`]).
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, PersistError> {
    let mut out = Vec::new();
    encode_to(snapshot, &mut out)?;
    Ok(out)
}

/// Reads the cache a previous run wrote for `trust_domain`; `None` when
/// there is none (or it belongs to another trust domain).
pub fn load(data_dir: &Path, trust_domain: &TrustDomain) -> Result<Option<Restored>, PersistError> {
    let path = cache_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(PersistError::Read {
                path,
                message: e.to_string(),
            })
        }
    };
    decode(&bytes, trust_domain).map_err(|message| PersistError::Read { path, message })
}

/// Parses a cache document. An entry or SVID that does not parse is
/// skipped (the server sends it again); a broken document is an error.
pub fn decode(bytes: &[u8], trust_domain: &TrustDomain) -> Result<Option<Restored>, String> {
    let file: CacheFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.version != VERSION {
        return Err(format!("unknown cache version {}", file.version));
    }
    if file.trust_domain != trust_domain.as_str() {
        tracing::warn!(
            cached = file.trust_domain,
            configured = %trust_domain,
            "cached SVIDs belong to another trust domain; ignoring them"
        );
        return Ok(None);
    }
    let der = |s: &String| B64.decode(s).map_err(|e| e.to_string());
    let ders = |v: &[String]| v.iter().map(der).collect::<Result<Vec<_>, _>>();
    let jwt_keys = file
        .jwt_keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.kid.clone()?;
            JwtPublicKey::from_jwk(jwk).ok().map(|k| (kid, k))
        })
        .collect();
    let revoked = |v: Vec<(String, i64)>| {
        v.into_iter()
            .map(|(k, t)| (k, from_unix_seconds(t)))
            .collect()
    };
    let entries = file
        .entries
        .into_iter()
        .filter_map(|e| {
            let id = e.id.clone();
            entry_from_file(e)
                .map_err(|error| tracing::warn!(entry_id = id, error, "skipping cached entry"))
                .ok()
        })
        .collect();
    Ok(Some(Restored {
        revision: file.revision,
        bundle: ders(&file.bundle)?,
        jwt_keys,
        crls: ders(&file.crls)?,
        revocations: Revocations {
            x509_serials: revoked(file.revoked_x509_serials),
            jwt_ids: revoked(file.revoked_jwt_ids),
        },
        tainted: Tainted {
            x509: file.tainted_x509.into_iter().collect(),
            jwt_kids: file.tainted_jwt_kids.into_iter().collect(),
        },
        entries,
    }))
}

fn entry_from_file(e: EntryFile) -> Result<(RegistrationEntry, Option<RestoredSvid>), String> {
    let selectors = e
        .selectors
        .iter()
        .map(|s| s.parse::<Selector>().map_err(|x| x.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let entry = RegistrationEntry {
        id: e.id,
        spiffe_id: SpiffeId::parse_with_path(&e.spiffe_id).map_err(|x| x.to_string())?,
        parent_id: SpiffeId::parse(&e.parent_id).map_err(|x| x.to_string())?,
        selectors,
        x509_svid_ttl: e.x509_svid_ttl.map(Duration::from_secs),
        jwt_svid_ttl: e.jwt_svid_ttl.map(Duration::from_secs),
        dns_names: e.dns_names,
        hint: e.hint,
        admin: e.admin,
        downstream: e.downstream,
        revision: e.revision,
    };
    let svid = match e.svid.map(svid_from_file).transpose() {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(entry_id = entry.id, error, "skipping cached SVID");
            None
        }
    };
    Ok((entry, svid))
}

fn svid_from_file(s: SvidFile) -> Result<RestoredSvid, String> {
    let chain = s
        .chain
        .iter()
        .map(|c| B64.decode(c).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let key_pkcs8 = B64.decode(&s.key_pkcs8).map_err(|e| e.to_string())?;
    let leaf = chain.first().ok_or("empty chain")?;
    signet_core::x509::key_matches_leaf(leaf, &key_pkcs8).map_err(|e| e.to_string())?;
    let info = cert_info(leaf).map_err(|e| e.to_string())?;
    Ok(RestoredSvid {
        not_before: info.not_before,
        svid: Svid {
            x509: X509Svid {
                spiffe_id: info.spiffe_id.ok_or("no SPIFFE ID in the leaf")?,
                chain,
                not_after: info.not_after,
                authority_id: s.authority_id,
                serial_hex: info.serial_hex,
            },
            key_pkcs8: zeroize::Zeroizing::new(key_pkcs8),
        },
    })
}

/// Writes the published cache to disk whenever it changes, coalescing
/// bursts; the Workload API never waits for it.
pub async fn persist_loop(data_dir: PathBuf, mut snapshots: watch::Receiver<Arc<Snapshot>>) {
    let path = cache_path(&data_dir);
    // The digest of what is on disk, not the document: it can be megabytes.
    let mut last: Option<[u8; 32]> = None;
    loop {
        if snapshots.changed().await.is_err() {
            return;
        }
        settle(&mut snapshots).await;
        let snapshot = snapshots.borrow_and_update().clone();
        if !snapshot.is_ready() {
            continue;
        }
        let target = path.clone();
        let entries = snapshot.entries.len();
        // A bulk thread: encoding a cold start's 10k entries is tens of
        // milliseconds of CPU, which must not hold up the threads serving
        // workloads.
        let written =
            signet_runtime::bulk::run(move || write_if_changed(&target, &snapshot, last)).await;
        match written {
            Ok(Ok(digest)) => {
                if last != Some(digest) {
                    tracing::debug!(entries, "SVID cache persisted");
                }
                last = Some(digest);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot persist the SVID cache"),
            Err(e) => tracing::error!(error = %e, "cache writer task failed"),
        }
    }
}

/// Returns once the cache has not changed for [`COALESCE`], or
/// [`MAX_DELAY`] after it was called, or when the sender is gone.
async fn settle(snapshots: &mut watch::Receiver<Arc<Snapshot>>) {
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    loop {
        let quiet = tokio::time::Instant::now() + COALESCE;
        if quiet >= deadline {
            tokio::time::sleep_until(deadline).await;
            return;
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(quiet) => return,
        }
    }
}

/// Writes the document unless its digest is `last`; returns its digest.
/// Encoding twice (to hash, then to the file) costs far less than holding
/// the document.
fn write_if_changed(
    path: &Path,
    snapshot: &Snapshot,
    last: Option<[u8; 32]>,
) -> Result<[u8; 32], PersistError> {
    let mut digest = Digest::default();
    encode_to(snapshot, &mut digest)?;
    let digest = digest.finish();
    if last == Some(digest) {
        return Ok(digest);
    }
    // A failed encoding fails the write, so no partial file replaces the old.
    write_atomic_with(path, 0o600, |f| {
        let mut out = std::io::BufWriter::new(f);
        encode_to(snapshot, &mut out).map_err(std::io::Error::other)?;
        out.flush()
    })?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn cache_is_written_with_mode_0600_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let mut snapshot = Snapshot::empty(td.clone());
        snapshot.bundle = Some(Arc::new(vec![b"ca".to_vec()]));
        snapshot.revision = 42;
        snapshot.crls = Arc::new(vec![b"crl".to_vec()]);
        let mut revocations = Revocations::default();
        revocations
            .jwt_ids
            .insert("j".into(), from_unix_seconds(2_000_000_000));
        snapshot.revocations = Arc::new(revocations.clone());
        let (tx, rx) = watch::channel(Arc::new(Snapshot::empty(td.clone())));
        tokio::spawn(persist_loop(dir.path().to_owned(), rx));
        tx.send_replace(Arc::new(snapshot));
        let path = cache_path(dir.path());
        for _ in 0..100 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = load(dir.path(), &td).unwrap().unwrap();
        assert_eq!(back.revision, 42);
        assert_eq!(back.bundle, vec![b"ca".to_vec()]);
        assert_eq!(back.crls, vec![b"crl".to_vec()]);
        assert_eq!(back.revocations, revocations);
        let other = TrustDomain::new("other.org").unwrap();
        assert!(load(dir.path(), &other).unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_or_the_longest_delay_ends_a_burst_of_changes() {
        let td = TrustDomain::new("example.org").unwrap();
        let (tx, mut rx) = watch::channel(Arc::new(Snapshot::empty(td.clone())));
        let start = tokio::time::Instant::now();
        settle(&mut rx).await;
        assert_eq!(start.elapsed(), COALESCE, "no change: one pause");

        // Changes every 100 ms never pause: written at MAX_DELAY.
        let sender = tokio::spawn({
            let td = td.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    tx.send_replace(Arc::new(Snapshot::empty(td.clone())));
                }
            }
        });
        let start = tokio::time::Instant::now();
        settle(&mut rx).await;
        assert_eq!(start.elapsed(), MAX_DELAY);
        sender.abort();
    }

    #[test]
    fn entries_round_trip_and_an_unchanged_document_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let mut snapshot = Snapshot::empty(td.clone());
        snapshot.bundle = Some(Arc::new(vec![b"ca".to_vec()]));
        let entry = RegistrationEntry {
            id: "e1".into(),
            spiffe_id: SpiffeId::parse("spiffe://example.org/web").unwrap(),
            parent_id: SpiffeId::parse("spiffe://example.org/agent").unwrap(),
            selectors: vec![Selector::parse("unix:uid:1000").unwrap()],
            x509_svid_ttl: Some(Duration::from_secs(60)),
            jwt_svid_ttl: None,
            dns_names: vec!["web.local".into()],
            hint: "h".into(),
            admin: false,
            downstream: false,
            revision: 3,
        };
        snapshot.entries.insert(
            "e1".into(),
            super::super::state::CachedEntry {
                entry: Arc::new(entry.clone()),
                svid: None,
            },
        );
        let path = cache_path(dir.path());
        let digest = write_if_changed(&path, &snapshot, None).unwrap();
        let back = load(dir.path(), &td).unwrap().unwrap();
        assert_eq!(back.entries.len(), 1);
        assert_eq!(back.entries[0].0, entry);

        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            write_if_changed(&path, &snapshot, Some(digest)).unwrap(),
            digest
        );
        assert!(!path.exists(), "same document: no write");
    }
}
