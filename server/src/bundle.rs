//! The trust bundle's sequence number: kept in the datastore with a
//! fingerprint of the authorities, increased whenever they change (at
//! startup, e.g. a new CA or JWT key, or at runtime) and never reset by a
//! restart.

use crate::ca::CertificateAuthority;
use crate::datastore::{DataStore, DataStoreError};
use crate::events::Change;

/// Seconds a bundle consumer should wait before fetching the bundle again
/// (`spiffe_refresh_hint`).
pub const REFRESH_HINT_SECS: u64 = 300;

/// Brings the CA's bundle sequence in line with the datastore, bumping it
/// when the authorities differ from the stored fingerprint; a changed
/// sequence is an event, so every Sync stream (and one resuming after a
/// restart) hears of it. Returns the sequence.
pub async fn sync_sequence(
    ds: &dyn DataStore,
    ca: &CertificateAuthority,
) -> Result<u64, DataStoreError> {
    let before = ca.bundle();
    let sequence = ds.sync_bundle_sequence(&before.fingerprint()).await?;
    ca.set_bundle_sequence(sequence);
    if sequence != before.sequence {
        tracing::info!(sequence, "trust bundle sequence");
        // After the CA holds the sequence, so the event's readers see it.
        ds.append_events(vec![Change::BundleChanged]).await?;
    }
    Ok(sequence)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use signet_core::{ManualClock, TrustDomain};

    use super::*;
    use crate::ca::CaSettings;
    use crate::datastore::SqliteDataStore;

    fn load(dir: &std::path::Path, clock: Arc<ManualClock>) -> CertificateAuthority {
        let settings = CaSettings {
            trust_domain: TrustDomain::new("example.org").unwrap(),
            ca_ttl: Duration::from_secs(3600),
            default_svid_ttl: Duration::from_secs(600),
            default_jwt_svid_ttl: Duration::from_secs(300),
            backdate: Duration::from_secs(30),
            schedule: Default::default(),
        };
        CertificateAuthority::load_or_create(&dir.join("ca"), settings, clock)
            .unwrap()
            .0
    }

    #[tokio::test]
    async fn sequence_persists_across_restarts_and_increases_on_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ));
        let db = dir.path().join("ds.sqlite3");

        let ds = SqliteDataStore::open(&db).await.unwrap();
        let ca = load(dir.path(), clock.clone());
        let first = sync_sequence(&ds, &ca).await.unwrap();
        assert_eq!(first, 1);
        assert_eq!(ca.bundle().sequence, 1);
        ds.close().await;

        // Restart, nothing changed: same sequence.
        let ds = SqliteDataStore::open(&db).await.unwrap();
        let ca = load(dir.path(), clock.clone());
        assert_eq!(sync_sequence(&ds, &ca).await.unwrap(), first);
        ds.close().await;

        // A new JWT key (prepared): the sequence moves on.
        let ds = SqliteDataStore::open(&db).await.unwrap();
        let ca = load(dir.path(), clock.clone());
        ca.prepare(crate::ca::AuthorityKind::Jwt).unwrap();
        let second = sync_sequence(&ds, &ca).await.unwrap();
        assert!(second > first);
        ds.close().await;

        // The CA expired and was replaced: again, and the bump is an event
        // on the bus.
        clock.advance(Duration::from_secs(3601));
        let ds = SqliteDataStore::open(&db).await.unwrap();
        let ca = load(dir.path(), clock.clone());
        let ds: Arc<dyn DataStore> = Arc::new(ds);
        let bus = crate::events::ChangeBus::start(ds.clone()).await.unwrap();
        let (mut rx, _) = bus.subscribe();
        let third = sync_sequence(ds.as_ref(), &ca).await.unwrap();
        assert!(third > second);
        assert_eq!(ca.bundle().sequence, third);
        assert_eq!(rx.recv().await.unwrap().change, Change::BundleChanged);
    }
}
