//! The trust domain's X.509 authority: a self-signed P-256 root kept in
//! `<data-dir>/ca/`, reused across restarts and regenerated only when missing,
//! expired or for another trust domain. It signs every X.509-SVID; beside it
//! the JWT key (`jwt.rs`) signs every JWT-SVID.

mod disk;
mod issuer;
mod jwt;
pub mod rotation;
mod store;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rcgen::{KeyPair, PublicKeyData};
use signet_core::clock::{from_unix_seconds, unix_seconds};
use signet_core::jwt::{mint_jwt_svid, Jwk, JwtError, JwtPublicKey, JwtSigner, MintParams};
use signet_core::x509::{
    ca_params, cert_info, key_matches_leaf, leaf_params, sign_leaf, X509Error,
};
use signet_core::{Clock, SpiffeId, TrustDomain};

pub use disk::{create_private_dir, write_atomic, CaFiles};
pub use jwt::{JwtKeyFiles, JWT_KEY_FILE, JWT_KID_FILE};
pub use rotation::{AuthorityState, Schedule};

use issuer::CaIssuer;
use rotation::{active, Action, HasMeta, Meta};
use store::{StateFile, Store};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    #[error("CA file {0:?}: {1}")]
    Io(std::path::PathBuf, String),
    #[error(transparent)]
    X509(#[from] X509Error),
    #[error("the CA has expired; restart the server to generate a new one")]
    Expired,
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
}

/// `t + d`, or the error naming what overflowed.
fn later(t: SystemTime, d: Duration, what: &'static str) -> Result<SystemTime, CaError> {
    t.checked_add(d).ok_or(CaError::TimeOutOfRange(what))
}

/// `t - d`, or the error naming what overflowed.
fn earlier(t: SystemTime, d: Duration, what: &'static str) -> Result<SystemTime, CaError> {
    t.checked_sub(d).ok_or(CaError::TimeOutOfRange(what))
}

/// The certificates a peer trusts for this trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub trust_domain: TrustDomain,
    /// DER CA certificates.
    pub x509_authorities: Vec<Vec<u8>>,
    /// Public keys that verify JWT-SVIDs.
    pub jwt_authorities: Vec<JwtAuthority>,
    /// Increases whenever the authorities change (kept in the datastore).
    pub sequence: u64,
}

impl Bundle {
    /// `(kid, key)` pairs, as `signet_core::bundle` takes them.
    pub fn jwt_keys(&self) -> Vec<(String, JwtPublicKey)> {
        self.jwt_authorities
            .iter()
            .map(|a| (a.kid.clone(), a.public_key.clone()))
            .collect()
    }

    /// A digest of the authorities (not the sequence): when it differs from
    /// the stored one, the bundle changed and its sequence must increase.
    pub fn fingerprint(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for der in &self.x509_authorities {
            ctx.update(b"x509\0");
            ctx.update(&(der.len() as u64).to_be_bytes());
            ctx.update(der);
        }
        for a in &self.jwt_authorities {
            ctx.update(b"jwt\0");
            ctx.update(&(a.kid.len() as u64).to_be_bytes());
            ctx.update(a.kid.as_bytes());
            let key = a.public_key.canonical_bytes();
            ctx.update(&(key.len() as u64).to_be_bytes());
            ctx.update(&key);
        }
        hex::encode(ctx.finish().as_ref())
    }
}

/// A JWT signing key as the bundle publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthority {
    pub kid: String,
    /// The `jwt-svid` JWK.
    pub jwk: Jwk,
    pub public_key: JwtPublicKey,
    /// Unix seconds after which nothing it signed is valid (no token
    /// outlives the CA).
    pub expires_at: i64,
}

/// A freshly minted JWT-SVID.
#[derive(Debug, Clone)]
pub struct MintedJwt {
    pub token: String,
    pub jti: String,
    /// The JWT authority that signed it.
    pub kid: String,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
}

/// A freshly signed X.509-SVID.
#[derive(Debug, Clone)]
pub struct IssuedSvid {
    pub spiffe_id: SpiffeId,
    /// DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    pub not_after: SystemTime,
    pub serial_hex: String,
    /// The signing X.509 authority: hex SHA-256 of its certificate DER.
    pub authority_id: String,
}

/// Which kind of authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// An authority as the Admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityInfo {
    pub kind: AuthorityKind,
    pub id: String,
    pub state: AuthorityState,
    pub tainted: bool,
    pub not_before: i64,
    pub not_after: i64,
    /// DER, X.509 only.
    pub certificate: Option<Vec<u8>>,
}

struct X509Authority {
    meta: Meta,
    cert_der: Vec<u8>,
    key: Arc<KeyPair>,
    issuer: Arc<CaIssuer>,
}

struct JwtKey {
    meta: Meta,
    signer: Arc<JwtSigner>,
}

impl HasMeta for X509Authority {
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
}

impl HasMeta for JwtKey {
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
}

#[derive(Default)]
struct Authorities {
    /// Active first, then prepared, then old.
    x509: Vec<X509Authority>,
    jwt: Vec<JwtKey>,
}

fn order<T: HasMeta>(list: &mut [T]) {
    list.sort_by_key(|a| match a.meta().state {
        AuthorityState::Active => 0,
        AuthorityState::Prepared => 1,
        AuthorityState::Old => 2,
    });
}

fn info<T: HasMeta>(kind: AuthorityKind, a: &T, cert: Option<Vec<u8>>) -> AuthorityInfo {
    let m = a.meta();
    AuthorityInfo {
        kind,
        id: m.id.clone(),
        state: m.state,
        tainted: m.tainted,
        not_before: unix_seconds(m.not_before),
        not_after: unix_seconds(m.not_after),
        certificate: cert,
    }
}

fn x509_info(a: &X509Authority) -> AuthorityInfo {
    info(AuthorityKind::X509, a, Some(a.cert_der.clone()))
}

fn jwt_info(a: &JwtKey) -> AuthorityInfo {
    info(AuthorityKind::Jwt, a, None)
}

pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    clock: Arc<dyn Clock>,
    backdate: Duration,
    ca_ttl: Duration,
    default_svid_ttl: Duration,
    default_jwt_svid_ttl: Duration,
    schedule: Schedule,
    store: Store,
    authorities: RwLock<Authorities>,
    sequence: AtomicU64,
    /// Every X.509 certificate signed, delivered or not.
    x509_signatures: prometheus_client::metrics::counter::Counter,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// Settings for [`CertificateAuthority::load_or_create`].
pub struct CaSettings {
    pub trust_domain: TrustDomain,
    pub ca_ttl: Duration,
    pub default_svid_ttl: Duration,
    pub default_jwt_svid_ttl: Duration,
    pub backdate: Duration,
    pub schedule: Schedule,
}

impl CertificateAuthority {
    /// Loads the authorities recorded in `dir` (or, the first time, the
    /// single CA and JWT key of the older layout), drops expired ones, and
    /// brings the state machine up to date (a new active authority when
    /// none is usable). `true` when an X.509 CA was generated.
    pub fn load_or_create(
        dir: &Path,
        settings: CaSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, bool), CaError> {
        let store = Store::new(dir.to_path_buf());
        let now = clock.now();
        let mut auths = Authorities::default();
        match store.read_state()? {
            Some(state) => {
                for r in &state.x509 {
                    match store.read_x509(&r.id)? {
                        Some((k, c)) => {
                            if let Some(mut a) = load_x509(&k, &c, &settings.trust_domain)? {
                                a.meta.state = r.state;
                                a.meta.tainted = r.tainted;
                                auths.x509.push(a);
                            }
                        }
                        None => {
                            tracing::warn!(id = %r.id, "X.509 authority files missing; dropped")
                        }
                    }
                }
                for r in &state.jwt {
                    match store.read_jwt(&r.id)? {
                        Some(pem) => auths.jwt.push(JwtKey {
                            meta: Meta {
                                id: r.id.clone(),
                                state: r.state,
                                tainted: r.tainted,
                                not_before: r.not_before(),
                                not_after: r.not_after(),
                            },
                            signer: Arc::new(jwt_signer(&r.id, &pem)?),
                        }),
                        None => tracing::warn!(kid = %r.id, "JWT key file missing; dropped"),
                    }
                }
            }
            None => import_legacy(&store, &settings, now, &mut auths)?,
        }
        let ca = Self {
            trust_domain: settings.trust_domain,
            clock,
            backdate: settings.backdate,
            ca_ttl: settings.ca_ttl,
            default_svid_ttl: settings.default_svid_ttl,
            default_jwt_svid_ttl: settings.default_jwt_svid_ttl,
            schedule: settings.schedule,
            store,
            authorities: RwLock::new(auths),
            sequence: AtomicU64::new(0),
            x509_signatures: Default::default(),
        };
        let before = ca.active_x509_id();
        ca.tick()?;
        ca.persist()?;
        let created = before != ca.active_x509_id();
        Ok((ca, created))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Authorities> {
        self.authorities.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Authorities> {
        self.authorities.write().unwrap_or_else(|e| e.into_inner())
    }

    fn active_x509_id(&self) -> Option<String> {
        active(&self.read().x509).map(|a| a.meta.id.clone())
    }

    /// Writes the state file and the mirrors of the active authorities.
    fn persist(&self) -> Result<(), CaError> {
        let (state, mirror_x509, mirror_jwt) = {
            let a = self.read();
            let state = StateFile {
                x509: a.x509.iter().map(|x| store::record(&x.meta)).collect(),
                jwt: a.jwt.iter().map(|j| store::record(&j.meta)).collect(),
            };
            let mx = active(&a.x509).map(|x| {
                (
                    x.key.serialize_pem(),
                    signet_core::pem::encode_certs([x.cert_der.as_slice()]),
                )
            });
            let mj = active(&a.jwt).map(|j| j.meta.id.clone());
            (state, mx, mj)
        };
        self.store.write_state(&state)?;
        if let Some((k, c)) = mirror_x509 {
            CaFiles::new(self.store.dir().to_path_buf()).write(&k, &c)?;
        }
        if let Some(kid) = mirror_jwt {
            if let Some(pem) = self.store.read_jwt(&kid)? {
                let files = JwtKeyFiles::new(self.store.dir().to_path_buf());
                write_atomic(&files.key_path(), pem.as_bytes(), 0o600)?;
                write_atomic(&files.kid_path(), format!("{kid}\n").as_bytes(), 0o644)?;
            }
        }
        Ok(())
    }

    /// Runs the state machine of both kinds up to now. Returns whether
    /// anything changed (the bundle then changed too).
    pub fn tick(&self) -> Result<bool, CaError> {
        let now = self.clock.now();
        let mut changed = false;
        for kind in [AuthorityKind::X509, AuthorityKind::Jwt] {
            // Bounded: each action moves the state forward.
            for _ in 0..16 {
                let action = {
                    let a = self.read();
                    match kind {
                        AuthorityKind::X509 => rotation::step(&a.x509, &self.schedule, now),
                        AuthorityKind::Jwt => rotation::step(&a.jwt, &self.schedule, now),
                    }
                };
                match action {
                    Action::Wait(_) => break,
                    Action::Generate(state) => {
                        let id = self.generate(kind, state, now)?;
                        tracing::info!(kind = kind.as_str(), id = %id, state = state.as_str(), "authority generated");
                    }
                    Action::Activate => {
                        let id = self.activate_prepared(kind)?;
                        tracing::info!(kind = kind.as_str(), id = %id, "authority activated");
                    }
                    Action::Drop(id) => {
                        self.remove(kind, &id);
                        tracing::info!(kind = kind.as_str(), id = %id, "expired authority dropped from the bundle");
                    }
                }
                changed = true;
            }
        }
        if changed {
            self.persist()?;
        }
        Ok(changed)
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_transition(&self) -> SystemTime {
        let now = self.clock.now();
        let a = self.read();
        let at = |action: Action| match action {
            Action::Wait(t) => t,
            _ => now,
        };
        at(rotation::step(&a.x509, &self.schedule, now)).min(at(rotation::step(
            &a.jwt,
            &self.schedule,
            now,
        )))
    }

    fn generate(
        &self,
        kind: AuthorityKind,
        state: AuthorityState,
        now: SystemTime,
    ) -> Result<String, CaError> {
        let id = match kind {
            AuthorityKind::X509 => {
                let mut a = generate(&self.trust_domain, self.ca_ttl, now)?;
                a.meta.state = state;
                self.store.write_x509(
                    &a.meta.id,
                    &a.key.serialize_pem(),
                    &signet_core::pem::encode_certs([a.cert_der.as_slice()]),
                )?;
                let id = a.meta.id.clone();
                let mut w = self.write();
                if state == AuthorityState::Active {
                    demote_active(&mut w.x509);
                }
                w.x509.push(a);
                order(&mut w.x509);
                id
            }
            AuthorityKind::Jwt => {
                let kid = hex::encode(rand::random::<[u8; 16]>());
                let (signer, der) =
                    JwtSigner::generate(kid.clone()).map_err(|e| CaError::Key(e.to_string()))?;
                self.store
                    .write_jwt(&kid, &signet_core::pem::encode_private_key(&der))?;
                let now = from_unix_seconds(unix_seconds(now));
                let mut w = self.write();
                if state == AuthorityState::Active {
                    demote_active(&mut w.jwt);
                }
                w.jwt.push(JwtKey {
                    meta: Meta {
                        id: kid.clone(),
                        state,
                        tainted: false,
                        not_before: now,
                        not_after: later(now, self.ca_ttl, "the JWT key's end (ca_ttl)")?,
                    },
                    signer: Arc::new(signer),
                });
                order(&mut w.jwt);
                kid
            }
        };
        Ok(id)
    }

    fn activate_prepared(&self, kind: AuthorityKind) -> Result<String, CaError> {
        let mut w = self.write();
        let done = match kind {
            AuthorityKind::X509 => rotation::activate(&mut w.x509),
            AuthorityKind::Jwt => rotation::activate(&mut w.jwt),
        };
        if !done {
            return Err(CaError::FailedPrecondition(format!(
                "no prepared {} authority to activate; prepare one first",
                kind.as_str()
            )));
        }
        order(&mut w.x509);
        order(&mut w.jwt);
        let id = match kind {
            AuthorityKind::X509 => active(&w.x509).map(|a| a.meta.id.clone()),
            AuthorityKind::Jwt => active(&w.jwt).map(|a| a.meta.id.clone()),
        };
        id.ok_or_else(|| CaError::Key("no active authority after activation".into()))
    }

    fn remove(&self, kind: AuthorityKind, id: &str) {
        let mut w = self.write();
        match kind {
            AuthorityKind::X509 => w.x509.retain(|a| a.meta.id != id),
            AuthorityKind::Jwt => w.jwt.retain(|a| a.meta.id != id),
        }
        drop(w);
        match kind {
            AuthorityKind::X509 => self.store.remove_x509(id),
            AuthorityKind::Jwt => self.store.remove_jwt(id),
        }
    }

    /// Every authority of `kind`: active, prepared, old.
    pub fn list(&self, kind: AuthorityKind) -> Vec<AuthorityInfo> {
        let a = self.read();
        match kind {
            AuthorityKind::X509 => a.x509.iter().map(x509_info).collect(),
            AuthorityKind::Jwt => a.jwt.iter().map(jwt_info).collect(),
        }
    }

    fn find(&self, kind: AuthorityKind, id: &str) -> Option<AuthorityInfo> {
        self.list(kind).into_iter().find(|a| a.id == id)
    }

    /// Prepares a new authority now (in the bundle, signing nothing yet).
    /// When one is already prepared, that one is returned.
    pub fn prepare(&self, kind: AuthorityKind) -> Result<AuthorityInfo, CaError> {
        let existing = self
            .list(kind)
            .into_iter()
            .find(|a| a.state == AuthorityState::Prepared);
        if let Some(p) = existing {
            return Ok(p);
        }
        let id = self.generate(kind, AuthorityState::Prepared, self.clock.now())?;
        self.persist()?;
        tracing::info!(kind = kind.as_str(), id = %id, "authority prepared by an admin");
        self.find(kind, &id)
            .ok_or_else(|| CaError::NotFound(format!("authority {id}")))
    }

    /// Activates the prepared authority; the active one becomes old.
    pub fn activate(&self, kind: AuthorityKind) -> Result<AuthorityInfo, CaError> {
        let id = self.activate_prepared(kind)?;
        self.persist()?;
        tracing::info!(kind = kind.as_str(), id = %id, "authority activated by an admin");
        self.find(kind, &id)
            .ok_or_else(|| CaError::NotFound(format!("authority {id}")))
    }

    /// Marks a non-active authority tainted: everything it signed must be
    /// re-issued. It stays in the bundle until revoked.
    pub fn taint(&self, kind: AuthorityKind, id: &str) -> Result<AuthorityInfo, CaError> {
        {
            let mut w = self.write();
            let meta = match kind {
                AuthorityKind::X509 => w.x509.iter_mut().map(|a| &mut a.meta).find(|m| m.id == id),
                AuthorityKind::Jwt => w.jwt.iter_mut().map(|a| &mut a.meta).find(|m| m.id == id),
            }
            .ok_or_else(|| CaError::NotFound(format!("{} authority {id:?}", kind.as_str())))?;
            if meta.state == AuthorityState::Active {
                return Err(CaError::FailedPrecondition(format!(
                    "{} authority {id} is active and cannot be tainted; prepare and activate another one first",
                    kind.as_str()
                )));
            }
            meta.tainted = true;
        }
        self.persist()?;
        tracing::warn!(kind = kind.as_str(), id = %id, "authority tainted");
        self.find(kind, id)
            .ok_or_else(|| CaError::NotFound(format!("authority {id}")))
    }

    /// Removes a tainted, non-active authority from the bundle.
    pub fn revoke(&self, kind: AuthorityKind, id: &str) -> Result<AuthorityInfo, CaError> {
        let found = self
            .find(kind, id)
            .ok_or_else(|| CaError::NotFound(format!("{} authority {id:?}", kind.as_str())))?;
        if found.state == AuthorityState::Active {
            return Err(CaError::FailedPrecondition(format!(
                "{} authority {id} is active and cannot be revoked; activate another one, then taint and revoke this one",
                kind.as_str()
            )));
        }
        if !found.tainted {
            return Err(CaError::FailedPrecondition(format!(
                "{} authority {id} is not tainted; taint it first",
                kind.as_str()
            )));
        }
        // State file first, then the key files.
        {
            let mut w = self.write();
            match kind {
                AuthorityKind::X509 => w.x509.retain(|a| a.meta.id != id),
                AuthorityKind::Jwt => w.jwt.retain(|a| a.meta.id != id),
            }
        }
        self.persist()?;
        self.remove(kind, id);
        tracing::warn!(kind = kind.as_str(), id = %id, "authority revoked and removed from the bundle");
        Ok(found)
    }

    /// The tainted authorities: X.509 ids and JWT kids.
    pub fn tainted(&self) -> (Vec<String>, Vec<String>) {
        let a = self.read();
        (
            a.x509
                .iter()
                .filter(|x| x.meta.tainted)
                .map(|x| x.meta.id.clone())
                .collect(),
            a.jwt
                .iter()
                .filter(|x| x.meta.tainted)
                .map(|x| x.meta.id.clone())
                .collect(),
        )
    }

    fn active_x509(&self) -> Result<(Arc<CaIssuer>, SystemTime, String), CaError> {
        let a = self.read();
        let x = active(&a.x509).ok_or(CaError::Expired)?;
        Ok((x.issuer.clone(), x.meta.not_after, x.meta.id.clone()))
    }

    fn active_jwt(&self) -> Result<(Arc<JwtSigner>, SystemTime), CaError> {
        let a = self.read();
        let j = active(&a.jwt).ok_or(CaError::Expired)?;
        Ok((j.signer.clone(), j.meta.not_after))
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn default_svid_ttl(&self) -> Duration {
        self.default_svid_ttl
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// When the active CA certificate expires (the epoch when none).
    pub fn not_after(&self) -> SystemTime {
        self.active_x509()
            .map(|(_, t, _)| t)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    pub fn default_jwt_svid_ttl(&self) -> Duration {
        self.default_jwt_svid_ttl
    }

    /// Every authority in any state: prepared ones before they sign, old
    /// ones until what they signed has expired.
    pub fn bundle(&self) -> Bundle {
        let a = self.read();
        Bundle {
            trust_domain: self.trust_domain.clone(),
            x509_authorities: a.x509.iter().map(|x| x.cert_der.clone()).collect(),
            jwt_authorities: a
                .jwt
                .iter()
                .map(|j| JwtAuthority {
                    kid: j.meta.id.clone(),
                    jwk: j.signer.jwk(),
                    public_key: j.signer.public_key(),
                    expires_at: unix_seconds(j.meta.not_after),
                })
                .collect(),
            sequence: self.sequence.load(Ordering::SeqCst),
        }
    }

    /// Sets the bundle sequence the datastore decided on (see
    /// `crate::bundle::sync_sequence`).
    pub fn set_bundle_sequence(&self, sequence: u64) {
        self.sequence.store(sequence, Ordering::SeqCst);
    }

    fn time_left(not_after: SystemTime, now: SystemTime) -> Result<Duration, CaError> {
        not_after
            .duration_since(now)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or(CaError::Expired)
    }

    /// Mints a JWT-SVID for `id` and `audience` (non-empty, no empty
    /// string) with the active JWT key. TTL: `ttl` (or the default JWT-SVID
    /// TTL), capped by the time the key has left. Times are whole seconds.
    pub fn mint_jwt_svid(
        &self,
        id: &SpiffeId,
        audience: &[String],
        ttl: Option<Duration>,
    ) -> Result<MintedJwt, CaError> {
        let (signer, not_after) = self.active_jwt()?;
        let now = from_unix_seconds(unix_seconds(self.clock.now()));
        let left = Self::time_left(not_after, now)?;
        let ttl = ttl.unwrap_or(self.default_jwt_svid_ttl).min(left);
        let expires_at = later(now, ttl, "the JWT-SVID expiry")?;
        let jti = uuid::Uuid::new_v4().to_string();
        let token = mint_jwt_svid(
            &signer,
            &MintParams {
                subject: id,
                audience,
                issued_at: now,
                expires_at,
                jti: jti.clone(),
            },
        )?;
        Ok(MintedJwt {
            token,
            jti,
            kid: signer.kid().to_owned(),
            issued_at: unix_seconds(now),
            expires_at: unix_seconds(expires_at),
        })
    }

    /// Signs an X.509-SVID for `id` over `public_key` with the active CA.
    /// TTL: `ttl` (or the default), capped by the time the CA has left;
    /// notBefore back-dated.
    pub fn issue_x509_svid(
        &self,
        id: &SpiffeId,
        public_key: &impl PublicKeyData,
        dns_names: &[String],
        ttl: Option<Duration>,
    ) -> Result<IssuedSvid, CaError> {
        let (issuer, ca_not_after, authority_id) = self.active_x509()?;
        let now = self.clock.now();
        let left = Self::time_left(ca_not_after, now)?;
        let ttl = ttl.unwrap_or(self.default_svid_ttl).min(left);
        let not_after = later(now, ttl, "the X.509-SVID notAfter")?;
        let not_before = earlier(now, self.backdate, "the back-dated notBefore")?;
        let params = leaf_params(id, dns_names, not_before, not_after)?;
        let der = sign_leaf(&params, public_key, &*issuer)?;
        self.x509_signatures.inc();
        // What the certificate says, known without parsing it back: the
        // serial is positive with a non-zero first byte (its DER content is
        // these bytes), and times are encoded in whole seconds.
        let serial_hex = params
            .serial_number
            .as_ref()
            .map(|s| hex::encode(s.as_ref()))
            .unwrap_or_default();
        Ok(IssuedSvid {
            spiffe_id: id.clone(),
            chain: vec![der],
            not_after: from_unix_seconds(unix_seconds(not_after)),
            serial_hex,
            authority_id,
        })
    }

    /// The count of X.509 certificates signed, for `/metrics`.
    pub fn x509_signature_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.x509_signatures.clone()
    }

    /// A DER CRL of `revoked` (hex serial, revocation time) signed by the
    /// X.509 authority `authority_id`; `None` when that authority is gone.
    pub fn sign_crl(
        &self,
        authority_id: &str,
        revoked: &[(String, SystemTime)],
        number: u64,
        next_update: SystemTime,
    ) -> Result<Option<Vec<u8>>, CaError> {
        let issuer = {
            let a = self.read();
            match a.x509.iter().find(|x| x.meta.id == authority_id) {
                Some(x) => x.issuer.clone(),
                None => return Ok(None),
            }
        };
        let now = self.clock.now();
        let next_update =
            next_update.max(later(now, Duration::from_secs(60), "the CRL nextUpdate")?);
        let revoked_certs = revoked
            .iter()
            .filter_map(|(serial, at)| {
                let bytes = hex::decode(serial).ok()?;
                Some(rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(&bytes),
                    revocation_time: (*at).into(),
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now.into(),
            next_update: next_update.into(),
            crl_number: rcgen::SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&*issuer)
            .map_err(|e| CaError::Key(format!("signing the CRL: {e}")))?;
        Ok(Some(crl.der().to_vec()))
    }

    /// The JWT keys of every authority in the bundle, for introspection.
    pub fn jwt_bundles(&self) -> signet_core::jwt::JwtBundles {
        let keys = self.bundle().jwt_keys().into_iter().collect();
        [(self.trust_domain.clone(), keys)].into_iter().collect()
    }
}

fn demote_active<T: HasMeta>(list: &mut [T]) {
    for a in list.iter_mut() {
        if a.meta().state == AuthorityState::Active {
            a.meta_mut().state = AuthorityState::Old;
        }
    }
}

fn jwt_signer(kid: &str, pem: &str) -> Result<JwtSigner, CaError> {
    let der = signet_core::pem::decode_private_key(pem.as_bytes())
        .map_err(|e| CaError::Key(format!("JWT key {kid}: {e}")))?;
    JwtSigner::from_pkcs8(kid.to_owned(), &der)
        .map_err(|e| CaError::Key(format!("JWT key {kid}: {e}")))
}

/// The first start after the single-CA layout: its CA and JWT key become
/// the active authorities (the JWT key lives a CA TTL from now).
fn import_legacy(
    store: &Store,
    settings: &CaSettings,
    now: SystemTime,
    auths: &mut Authorities,
) -> Result<(), CaError> {
    let dir = store.dir().to_path_buf();
    if let Some((key_pem, cert_pem)) = CaFiles::new(dir.clone()).read()? {
        if let Some(mut a) = load_x509(&key_pem, &cert_pem, &settings.trust_domain)? {
            if a.meta.not_after > now {
                a.meta.state = AuthorityState::Active;
                store.write_x509(&a.meta.id, &key_pem, &cert_pem)?;
                auths.x509.push(a);
            }
        }
    }
    let files = JwtKeyFiles::new(dir);
    if let (Some(pem), Some(kid)) = (
        store::read_opt(&files.key_path())?,
        store::read_opt(&files.kid_path())?,
    ) {
        let kid = kid.trim().to_owned();
        if !kid.is_empty() && kid.chars().all(|c| c.is_ascii_hexdigit()) {
            let signer = jwt_signer(&kid, &pem)?;
            store.write_jwt(&kid, &pem)?;
            let now = from_unix_seconds(unix_seconds(now));
            auths.jwt.push(JwtKey {
                meta: Meta {
                    id: kid,
                    state: AuthorityState::Active,
                    tainted: false,
                    not_before: now,
                    not_after: later(now, settings.ca_ttl, "the JWT key's end (ca_ttl)")?,
                },
                signer: Arc::new(signer),
            });
        }
    }
    Ok(())
}

/// An X.509 authority's id: lowercase hex SHA-256 of its certificate DER.
pub fn authority_id(cert_der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, cert_der).as_ref())
}

/// The public key of a DER PKCS#10 CSR whose signature verifies. Subject and
/// SANs are ignored: the caller decides the identity.
pub fn csr_public_key(der: &[u8]) -> Result<rcgen::PublicKey, X509Error> {
    rcgen::CertificateSigningRequestParams::from_der(
        &rustls_pki_types::CertificateSigningRequestDer::from(der),
    )
    .map(|p| p.public_key)
    .map_err(|e| X509Error::Csr(e.to_string()))
}

fn load_x509(
    key_pem: &str,
    cert_pem: &str,
    td: &TrustDomain,
) -> Result<Option<X509Authority>, CaError> {
    let key_der = signet_core::pem::decode_private_key(key_pem.as_bytes())
        .map_err(|e| CaError::Key(e.to_string()))?;
    let certs = signet_core::pem::decode_certs(cert_pem.as_bytes())
        .map_err(|e| CaError::Key(e.to_string()))?;
    let Some(cert_der) = certs.into_iter().next() else {
        return Ok(None);
    };
    key_matches_leaf(&cert_der, &key_der)?;
    let info = cert_info(&cert_der)?;
    let same_td = info.spiffe_id.as_ref().map(|id| id.trust_domain()) == Some(td);
    if !same_td {
        return Ok(None);
    }
    let key =
        Arc::new(KeyPair::try_from(key_der.as_slice()).map_err(|e| CaError::Key(e.to_string()))?);
    let issuer = issuer::build(&cert_der, &key)?;
    Ok(Some(X509Authority {
        meta: Meta {
            id: authority_id(&cert_der),
            state: AuthorityState::Old,
            tainted: false,
            not_before: info.not_before,
            not_after: info.not_after,
        },
        cert_der,
        key,
        issuer,
    }))
}

fn generate(td: &TrustDomain, ttl: Duration, now: SystemTime) -> Result<X509Authority, CaError> {
    let key = KeyPair::generate().map_err(|e| CaError::Key(e.to_string()))?;
    // Whole seconds, so the times read back from the file match.
    let now = from_unix_seconds(unix_seconds(now));
    let not_before = earlier(now, Duration::from_secs(30), "the CA notBefore")?;
    let not_after = later(now, ttl, "the CA notAfter (ca_ttl)")?;
    let params = ca_params(td, not_before, not_after)?;
    let cert = params.self_signed(&key).map_err(X509Error::from)?;
    let cert_der = cert.der().to_vec();
    let key = Arc::new(key);
    let issuer = issuer::build(&cert_der, &key)?;
    Ok(X509Authority {
        meta: Meta {
            id: authority_id(&cert_der),
            state: AuthorityState::Active,
            tainted: false,
            not_before,
            not_after,
        },
        cert_der,
        key,
        issuer,
    })
}

#[cfg(test)]
mod tests;
