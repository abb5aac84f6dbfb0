//! The trust domain's authorities: X.509 CAs (self-signed P-256 roots) that
//! sign every X.509-SVID and JWT keys that sign every JWT-SVID, each going
//! prepared → active → old on a schedule. One task (`manager`) owns them
//! and changes them (`authorities`, pure); their state lives in the
//! datastore (`store`), their private keys behind a `KeyManager`; signing
//! (`signer`) reads the manager's published snapshot without a lock.

mod authorities;
mod issuer;
pub mod key_manager;
mod keys;
mod manager;
pub mod rotation;
mod signer;
mod store;
pub mod upstream;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::PublicKeyData;
pub use signet_core::bundle::{Bundle, JwtAuthority};
use signet_core::clock::unix_seconds;
use signet_core::jwt::{JwtError, JwtKeyType};
use signet_core::x509::X509Error;
use signet_core::{Clock, JwtSvid, SpiffeId, TrustDomain, X509Svid};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::datastore::{DataStore, DataStoreError};
use crate::events::{Change, ChangeBus};
use authorities::Command;
pub use key_manager::{DiskKeys, KeyManager, MemoryKeys, Pkcs11Keys, PrivateKey};
use manager::{Manager, Outcome, Request};
pub use rotation::{AuthorityState, Schedule};
use signer::Signer;
pub use signer::{Lifetimes, Snapshot};
use upstream::{Upstream, UpstreamSettings};

#[derive(Debug, Clone, thiserror::Error)]
pub enum CaError {
    #[error("CA file {0:?}: {1}")]
    Io(std::path::PathBuf, String),
    #[error(transparent)]
    X509(#[from] X509Error),
    #[error("the CA has expired and no new one is active yet (a self-signed CA is replaced on the next rotation or restart; under an upstream authority, see the server log for why the upstream did not sign one)")]
    Expired,
    /// The upstream authority could not sign a new CA (unreachable, or it
    /// refused); retried with backoff while the active CA signs on.
    #[error("upstream authority: {0}")]
    Upstream(String),
    #[error("CA key: {0}")]
    Key(String),
    #[error("JWT-SVID: {0}")]
    Jwt(#[from] JwtError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0} is outside the times a certificate can hold")]
    TimeOutOfRange(&'static str),
    #[error("storing the authorities: {0}")]
    Store(#[source] DataStoreError),
    #[error("the authority manager has stopped (shutting down)")]
    Stopped,
}

/// `t + d`, or the error naming what overflowed.
fn later(t: SystemTime, d: Duration, what: &'static str) -> Result<SystemTime, CaError> {
    t.checked_add(d).ok_or(CaError::TimeOutOfRange(what))
}

/// `t - d`, or the error naming what overflowed.
fn earlier(t: SystemTime, d: Duration, what: &'static str) -> Result<SystemTime, CaError> {
    t.checked_sub(d).ok_or(CaError::TimeOutOfRange(what))
}

/// A freshly minted JWT-SVID and what the server records of it.
#[derive(Debug, Clone)]
pub struct MintedJwt {
    pub svid: JwtSvid,
    pub jti: String,
    /// The JWT authority that signed it.
    pub kid: String,
}

impl MintedJwt {
    /// Unix seconds.
    pub fn issued_at(&self) -> i64 {
        unix_seconds(self.svid.issued_at)
    }

    /// Unix seconds.
    pub fn expires_at(&self) -> i64 {
        unix_seconds(self.svid.expires_at)
    }
}

/// Which kind of authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthorityKind {
    X509,
    Jwt,
}

impl AuthorityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorityKind::X509 => "x509",
            AuthorityKind::Jwt => "jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "x509" => Some(AuthorityKind::X509),
            "jwt" => Some(AuthorityKind::Jwt),
            _ => None,
        }
    }
}

/// An authority as the Admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityInfo {
    pub kind: AuthorityKind,
    pub id: String,
    /// The server whose CA it is.
    pub server_id: String,
    pub state: AuthorityState,
    pub tainted: bool,
    pub not_before: i64,
    pub not_after: i64,
    /// DER, X.509 only.
    pub certificate: Option<Vec<u8>>,
}

/// Settings for [`CertificateAuthority::start`].
pub struct CaSettings {
    pub trust_domain: TrustDomain,
    /// This server's id: its authorities are stored under it.
    pub server_id: String,
    /// What signs each new X.509 CA; self-signed when `None`.
    pub upstream: Option<upstream::UpstreamSettings>,
    pub ca_ttl: Duration,
    pub default_svid_ttl: Duration,
    pub default_jwt_svid_ttl: Duration,
    pub backdate: Duration,
    pub schedule: Schedule,
    /// The type of each new JWT key (`jwt_key_type`).
    pub jwt_key_type: JwtKeyType,
    /// The `iss` of every JWT-SVID (`[oidc] issuer`).
    pub jwt_issuer: Option<String>,
}

/// How long a server joining a group waits between publishing its first
/// CA and signing with it: propagation to every connected agent takes
/// milliseconds (`ha_propagation_p99_ms`).
const JOIN_GRACE: Duration = Duration::from_secs(1);

/// How long a Sync stream waits for the authorities an event speaks of.
const CATCH_UP: Duration = Duration::from_secs(2);

/// The handle the rest of the server holds: signing and reading go to the
/// snapshot, changes to the manager.
pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    signer: Signer,
    requests: mpsc::Sender<Request>,
    /// The revision of the latest authority event heard of (see `follow`).
    reload: watch::Sender<u64>,
    /// Why rotation is failing, while it is (see [`Self::warning`]).
    warnings: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads the authorities from `ds` (keys from `keys`), brings the
    /// schedule up to date (a new active authority when none is usable),
    /// and starts the manager. `true` when an X.509 CA was generated.
    pub async fn start(
        settings: CaSettings,
        clock: Arc<dyn Clock>,
        ds: Arc<dyn DataStore>,
        keys: Arc<dyn KeyManager>,
    ) -> Result<(Self, bool), CaError> {
        let td = settings.trust_domain.clone();
        let upstream = match settings.upstream {
            None => None,
            Some(UpstreamSettings::Disk(disk)) => Some(Upstream::Disk(Arc::new(
                tokio::task::spawn_blocking(move || disk.load())
                    .await
                    .map_err(|e| CaError::Key(format!("loading the upstream authority: {e}")))??,
            ))),
            Some(UpstreamSettings::Signet(signet)) => Some(Upstream::Signet(Arc::new(
                upstream::SignetUpstream::new(signet, td.clone()),
            ))),
        };
        let loaded = store::load(ds.as_ref(), keys.clone(), &td, &settings.server_id).await?;
        let snapshot = Snapshot::new(
            &td,
            &settings.server_id,
            loaded.authorities.clone(),
            loaded.peers.clone(),
            loaded.sequence,
            loaded.revision,
        );
        let (publish, watched) = watch::channel(Arc::new(snapshot));
        let (warning, warnings) = watch::channel(None);
        let mut manager = Manager {
            authorities: loaded.authorities,
            peers: loaded.peers,
            server_id: settings.server_id,
            trust_domain: td.clone(),
            ca_ttl: settings.ca_ttl,
            jwt_key_type: settings.jwt_key_type,
            schedule: settings.schedule,
            upstream,
            clock: clock.clone(),
            ds,
            keys,
            publish,
            warning,
            stale_store: loaded.dropped,
        };
        let active_x509 =
            |m: &Manager| rotation::active(&m.authorities.x509).map(|a| a.meta.id.clone());
        let before = active_x509(&manager);
        manager.first_tick().await?;
        let created = before != active_x509(&manager);
        // A server joining a group makes its first CA active at once (it
        // has nothing to sign with): the other servers' agents must have it
        // in their bundle before it signs. Its event is committed; they
        // hear of it in milliseconds. Under an upstream root the bundle
        // does not change at all.
        let joining = created && !manager.peers.is_empty() && manager.upstream.is_none();
        if joining {
            tracing::info!(
                grace_ms = JOIN_GRACE.as_millis() as u64,
                "joining a group of servers: the new CA is published before it signs"
            );
            tokio::time::sleep(JOIN_GRACE).await;
        }
        let (requests, queue) = mpsc::channel(16);
        let (reload, reloads) = watch::channel(0);
        if let Some(Upstream::Signet(signet)) = &manager.upstream {
            upstream::roots::follow(signet.clone(), requests.downgrade());
        }
        tokio::spawn(manager.run(queue, reloads));
        let lifetimes = Lifetimes {
            default_svid_ttl: settings.default_svid_ttl,
            default_jwt_svid_ttl: settings.default_jwt_svid_ttl,
            backdate: settings.backdate,
            jwt_issuer: settings.jwt_issuer,
        };
        Ok((
            Self {
                trust_domain: td,
                signer: Signer::new(watched, clock, lifetimes),
                requests,
                reload,
                warnings,
            },
            created,
        ))
    }

    /// Follows the change bus: every authority event of any server (a new
    /// authority prepared, one tainted or revoked) makes the manager read
    /// the store again, so the bundle here is every server's. Also catches
    /// up on what was committed between the CA's start and the bus's.
    pub fn follow(&self, bus: &ChangeBus) -> tokio::task::JoinHandle<()> {
        let (mut events, current) = bus.subscribe();
        let reload = self.reload.clone();
        if current > self.signer.snapshot().revision {
            reload.send_replace(current);
        }
        let bus = bus.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if matches!(event.change, Change::BundleChanged | Change::TaintedChanged) {
                            reload.send_replace(event.revision);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some: read the store as it is now.
                        reload.send_replace(bus.current_revision());
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    async fn ask(&self, command: Command) -> Result<Outcome, CaError> {
        let (reply, outcome) = oneshot::channel();
        self.requests
            .send(Request { command, reply })
            .await
            .map_err(|_| CaError::Stopped)?;
        outcome.await.map_err(|_| CaError::Stopped)?
    }

    async fn ask_about(&self, command: Command) -> Result<AuthorityInfo, CaError> {
        self.ask(command)
            .await?
            .subject
            .ok_or_else(|| CaError::NotFound("the authority".into()))
    }

    /// Runs the schedule up to now (the manager also does so on its own
    /// timer); whether anything changed.
    pub async fn tick(&self) -> Result<bool, CaError> {
        Ok(self.ask(Command::Tick).await?.changed)
    }

    /// Prepares a new authority now (in the bundle, signing nothing yet).
    /// When one is already prepared, that one is returned.
    pub async fn prepare(&self, kind: AuthorityKind) -> Result<AuthorityInfo, CaError> {
        self.ask_about(Command::Prepare(kind)).await
    }

    /// Activates the prepared authority; the active one becomes old.
    pub async fn activate(&self, kind: AuthorityKind) -> Result<AuthorityInfo, CaError> {
        self.ask_about(Command::Activate(kind)).await
    }

    /// Marks a non-active authority tainted: everything it signed must be
    /// re-issued. It stays in the bundle until revoked.
    pub async fn taint(&self, kind: AuthorityKind, id: &str) -> Result<AuthorityInfo, CaError> {
        self.ask_about(Command::Taint(kind, id.to_owned())).await
    }

    /// Removes a tainted, non-active authority from the bundle.
    pub async fn revoke(&self, kind: AuthorityKind, id: &str) -> Result<AuthorityInfo, CaError> {
        self.ask_about(Command::Revoke(kind, id.to_owned())).await
    }

    /// Waits (a little, at most) until the published authorities reflect
    /// the event log up to `revision`: an authority event can reach a Sync
    /// stream a moment before the manager publishes what it committed.
    pub async fn caught_up(&self, revision: u64) {
        let mut watched = self.signer.subscribe();
        let _ = tokio::time::timeout(CATCH_UP, watched.wait_for(|s| s.revision >= revision)).await;
    }

    /// Why the authorities' rotation is failing and until when the active
    /// CA signs (an upstream out of reach), while it is.
    pub fn warning(&self) -> Option<String> {
        self.warnings.borrow().clone()
    }

    /// Every change the manager publishes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.signer.subscribe()
    }

    /// Every authority of `kind`: active, prepared, old.
    pub fn list(&self, kind: AuthorityKind) -> Vec<AuthorityInfo> {
        self.signer.list(kind)
    }

    /// This server's authorities of `kind` (it holds their keys).
    pub fn own(&self, kind: AuthorityKind) -> Vec<AuthorityInfo> {
        self.signer.snapshot().authorities.list(kind)
    }

    /// The tainted authorities: X.509 ids and JWT kids.
    pub fn tainted(&self) -> (Vec<String>, Vec<String>) {
        self.signer.tainted()
    }

    /// Every authority in any state: prepared ones before they sign, old
    /// ones until what they signed has expired.
    pub fn bundle(&self) -> Bundle {
        self.signer.bundle()
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn default_svid_ttl(&self) -> Duration {
        self.signer.lifetimes().default_svid_ttl
    }

    pub fn default_jwt_svid_ttl(&self) -> Duration {
        self.signer.lifetimes().default_jwt_svid_ttl
    }

    pub fn now(&self) -> SystemTime {
        self.signer.now()
    }

    /// When the active CA certificate expires (the epoch when none).
    pub fn not_after(&self) -> SystemTime {
        self.signer.not_after()
    }

    /// See [`Signer::mint_jwt_svid`].
    pub fn mint_jwt_svid(
        &self,
        id: &SpiffeId,
        audience: &[String],
        ttl: Option<Duration>,
    ) -> Result<MintedJwt, CaError> {
        self.signer.mint_jwt_svid(id, audience, ttl)
    }

    /// See [`Signer::issue_x509_svid`].
    pub fn issue_x509_svid(
        &self,
        id: &SpiffeId,
        public_key: &impl PublicKeyData,
        dns_names: &[String],
        ttl: Option<Duration>,
    ) -> Result<X509Svid, CaError> {
        self.signer.issue_x509_svid(id, public_key, dns_names, ttl)
    }

    /// See [`Signer::sign_downstream_ca`].
    pub fn sign_downstream_ca(
        &self,
        downstream: &SpiffeId,
        public_key: &impl PublicKeyData,
        ttl: Option<Duration>,
    ) -> Result<upstream::SignedCa, CaError> {
        self.signer.sign_downstream_ca(downstream, public_key, ttl)
    }

    /// See [`Signer::sign_crl`].
    pub fn sign_crl(
        &self,
        authority_id: &str,
        revoked: &[(String, SystemTime)],
        number: u64,
        next_update: SystemTime,
    ) -> Result<Option<Vec<u8>>, CaError> {
        self.signer
            .sign_crl(authority_id, revoked, number, next_update)
    }

    /// The count of X.509 certificates signed, for `/metrics`.
    pub fn x509_signature_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.signer.x509_signature_counter()
    }

    /// The JWT keys of every authority in the bundle, for introspection.
    pub fn jwt_bundles(&self) -> signet_core::jwt::JwtBundles {
        let keys = self.bundle().jwt_keys().into_iter().collect();
        [(self.trust_domain.clone(), keys)].into_iter().collect()
    }
}

pub use signet_core::x509::authority_id;

/// The public key of a DER PKCS#10 CSR whose signature verifies. Subject and
/// SANs are ignored: the caller decides the identity.
pub fn csr_public_key(der: &[u8]) -> Result<rcgen::PublicKey, X509Error> {
    rcgen::CertificateSigningRequestParams::from_der(
        &rustls_pki_types::CertificateSigningRequestDer::from(der),
    )
    .map(|p| p.public_key)
    .map_err(|e| X509Error::Csr(e.to_string()))
}

/// A CA on a datastore in `dir`, keys in memory, for tests elsewhere.
#[cfg(test)]
pub(crate) async fn for_tests(
    dir: &std::path::Path,
    settings: CaSettings,
    clock: Arc<dyn Clock>,
) -> CertificateAuthority {
    let ds = crate::datastore::SqliteDataStore::open(&dir.join("ca-test.sqlite3"))
        .await
        .unwrap_or_else(|e| panic!("test datastore: {e}"));
    let keys = Arc::new(MemoryKeys::default());
    match CertificateAuthority::start(settings, clock, Arc::new(ds), keys).await {
        Ok((ca, _)) => ca,
        Err(e) => panic!("test CA: {e}"),
    }
}

#[cfg(test)]
mod tests;
