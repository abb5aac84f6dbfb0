//! Signing from the manager's published snapshot of the authorities: no
//! lock, no waiting on the manager. Each call takes the current snapshot
//! (an `Arc` clone) and signs with what is active in it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::PublicKeyData;
use signet_core::clock::{from_unix_seconds, unix_seconds};
use signet_core::jwt::{mint_jwt_svid, Jwk, JwtPublicKey, MintParams};
use signet_core::x509::{ca_params, leaf_params, sign_leaf};
use signet_core::{Clock, JwtSvid, SpiffeId, TrustDomain};
use tokio::sync::watch;

use super::authorities::Authorities;
use super::rotation::active;
use super::upstream::SignedCa;
use super::{
    earlier, later, AuthorityInfo, AuthorityKind, Bundle, CaError, JwtAuthority, MintedJwt,
    X509Svid,
};
use crate::datastore::AuthorityRecord;

/// The authorities as the manager last committed or loaded them: this
/// server's (it signs with them) and every other server's (their public
/// part, in the bundle beside ours).
pub struct Snapshot {
    pub authorities: Authorities,
    pub peers: Vec<AuthorityRecord>,
    pub bundle: Bundle,
    pub server_id: String,
    /// The revision of the last event the manager wrote or read the
    /// authorities at: events up to it are reflected here.
    pub revision: u64,
}

impl Snapshot {
    pub fn new(
        td: &TrustDomain,
        server_id: &str,
        authorities: Authorities,
        peers: Vec<AuthorityRecord>,
        sequence: u64,
        revision: u64,
    ) -> Self {
        // Every server of a group publishes the same bundle: one order for
        // all, oldest first, whoever owns each authority.
        let mut x509: Vec<(i64, Vec<u8>)> = authorities
            .x509
            .iter()
            .flat_map(|x| {
                let at = unix_seconds(x.meta.not_before);
                x.bundle_certs().map(move |der| (at, der.to_vec()))
            })
            .chain(
                peers
                    .iter()
                    .filter(|p| p.kind == AuthorityKind::X509)
                    .flat_map(|p| {
                        p.bundle_certificates()
                            .into_iter()
                            .map(|der| (p.not_before, der))
                    }),
            )
            .collect();
        x509.sort_unstable();
        // Servers under one upstream root share it.
        let mut x509_authorities: Vec<Vec<u8>> = Vec::new();
        for (_, der) in x509 {
            if !x509_authorities.contains(&der) {
                x509_authorities.push(der);
            }
        }
        let own_jwt = authorities.jwt.iter().map(|j| {
            let authority = JwtAuthority {
                kid: j.meta.id.clone(),
                jwk: j.signer.jwk(),
                public_key: j.signer.public_key(),
                expires_at: unix_seconds(j.meta.not_after),
            };
            (unix_seconds(j.meta.not_before), authority)
        });
        let peer_jwt = peers
            .iter()
            .filter(|p| p.kind == AuthorityKind::Jwt)
            .filter_map(|p| Some((p.not_before, peer_jwt_authority(p)?)));
        let mut jwt: Vec<(i64, JwtAuthority)> = own_jwt.chain(peer_jwt).collect();
        jwt.sort_by(|a, b| (a.0, &a.1.kid).cmp(&(b.0, &b.1.kid)));
        let jwt_authorities = jwt.into_iter().map(|(_, a)| a).collect();
        let bundle = Bundle {
            trust_domain: td.clone(),
            x509_authorities,
            jwt_authorities,
            sequence,
        };
        Self {
            authorities,
            peers,
            bundle,
            server_id: server_id.to_owned(),
            revision,
        }
    }

    /// Every authority of `kind`, this server's first.
    pub fn list(&self, kind: AuthorityKind) -> Vec<AuthorityInfo> {
        let mut out: Vec<AuthorityInfo> = self
            .authorities
            .list(kind)
            .into_iter()
            .map(|a| AuthorityInfo {
                server_id: self.server_id.clone(),
                ..a
            })
            .collect();
        out.extend(
            self.peers
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| AuthorityInfo {
                    kind,
                    id: p.id.clone(),
                    server_id: p.server_id.clone(),
                    state: p.state,
                    tainted: p.tainted,
                    not_before: p.not_before,
                    not_after: p.not_after,
                    certificate: p.certificate.clone(),
                }),
        );
        out
    }

    /// Every server's tainted authorities: X.509 ids and JWT kids.
    pub fn tainted(&self) -> (Vec<String>, Vec<String>) {
        let (mut x509, mut jwt) = self.authorities.tainted();
        for p in self.peers.iter().filter(|p| p.tainted) {
            match p.kind {
                AuthorityKind::X509 => x509.push(p.id.clone()),
                AuthorityKind::Jwt => jwt.push(p.id.clone()),
            }
        }
        (x509, jwt)
    }
}

/// Another server's JWT key as the bundle publishes it; one whose stored
/// JWK does not parse is left out (and said so), not the whole bundle.
fn peer_jwt_authority(p: &AuthorityRecord) -> Option<JwtAuthority> {
    let parsed = p
        .public_key
        .as_deref()
        .ok_or_else(|| "no public key stored".to_owned())
        .and_then(|json| serde_json::from_str::<Jwk>(json).map_err(|e| e.to_string()))
        .and_then(|jwk| {
            JwtPublicKey::from_jwk(&jwk)
                .map(|key| (jwk, key))
                .map_err(|e| e.to_string())
        });
    match parsed {
        Ok((jwk, public_key)) => Some(JwtAuthority {
            kid: p.id.clone(),
            jwk,
            public_key,
            expires_at: p.not_after,
        }),
        Err(error) => {
            tracing::warn!(kid = %p.id, server_id = %p.server_id, %error, "another server's JWT key cannot be published");
            None
        }
    }
}

/// How SVIDs are shaped.
#[derive(Debug, Clone)]
pub struct Lifetimes {
    pub default_svid_ttl: Duration,
    pub default_jwt_svid_ttl: Duration,
    pub backdate: Duration,
    /// The `iss` claim of JWT-SVIDs (`[oidc] issuer`).
    pub jwt_issuer: Option<String>,
}

#[derive(Clone)]
pub struct Signer {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    clock: Arc<dyn Clock>,
    lifetimes: Lifetimes,
    /// Every X.509 certificate signed, delivered or not.
    x509_signatures: prometheus_client::metrics::counter::Counter,
}

fn time_left(not_after: SystemTime, now: SystemTime) -> Result<Duration, CaError> {
    not_after
        .duration_since(now)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or(CaError::Expired)
}

impl Signer {
    pub fn new(
        snapshot: watch::Receiver<Arc<Snapshot>>,
        clock: Arc<dyn Clock>,
        lifetimes: Lifetimes,
    ) -> Self {
        Self {
            snapshot,
            clock,
            lifetimes,
            x509_signatures: Default::default(),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub fn lifetimes(&self) -> &Lifetimes {
        &self.lifetimes
    }

    pub fn list(&self, kind: AuthorityKind) -> Vec<AuthorityInfo> {
        self.snapshot().list(kind)
    }

    pub fn tainted(&self) -> (Vec<String>, Vec<String>) {
        self.snapshot().tainted()
    }

    pub fn bundle(&self) -> Bundle {
        self.snapshot().bundle.clone()
    }

    /// When the active CA certificate expires (the epoch when none).
    pub fn not_after(&self) -> SystemTime {
        active(&self.snapshot().authorities.x509)
            .map(|a| a.meta.not_after)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Mints a JWT-SVID for `id` and `audience` with the active JWT key.
    /// TTL: `ttl` (or the default JWT-SVID TTL), capped by the time the key
    /// has left. Times are whole seconds.
    pub fn mint_jwt_svid(
        &self,
        id: &SpiffeId,
        audience: &[String],
        ttl: Option<Duration>,
    ) -> Result<MintedJwt, CaError> {
        let snapshot = self.snapshot();
        let key = active(&snapshot.authorities.jwt).ok_or(CaError::Expired)?;
        let now = from_unix_seconds(unix_seconds(self.clock.now()));
        let left = time_left(key.meta.not_after, now)?;
        let ttl = ttl.unwrap_or(self.lifetimes.default_jwt_svid_ttl).min(left);
        let expires_at = later(now, ttl, "the JWT-SVID expiry")?;
        let jti = uuid::Uuid::new_v4().to_string();
        let token = mint_jwt_svid(
            &key.signer,
            &MintParams {
                subject: id,
                audience,
                issued_at: now,
                expires_at,
                jti: jti.clone(),
                issuer: self.lifetimes.jwt_issuer.as_deref(),
            },
        )?;
        Ok(MintedJwt {
            svid: JwtSvid {
                token,
                issued_at: now,
                expires_at,
            },
            jti,
            kid: key.meta.id.clone(),
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
    ) -> Result<X509Svid, CaError> {
        let snapshot = self.snapshot();
        let ca = active(&snapshot.authorities.x509).ok_or(CaError::Expired)?;
        let now = self.clock.now();
        let left = time_left(ca.meta.not_after, now)?;
        let ttl = ttl.unwrap_or(self.lifetimes.default_svid_ttl).min(left);
        let not_after = later(now, ttl, "the X.509-SVID notAfter")?;
        let not_before = earlier(now, self.lifetimes.backdate, "the back-dated notBefore")?;
        let params = leaf_params(id, dns_names, not_before, not_after)?;
        let der = sign_leaf(&params, public_key, &*ca.issuer)?;
        self.x509_signatures.inc();
        // What the certificate says, known without parsing it back: the
        // serial is positive with a non-zero first byte (its DER content is
        // these bytes), and times are encoded in whole seconds.
        let serial_hex = params
            .serial_number
            .as_ref()
            .map(|s| hex::encode(s.as_ref()))
            .unwrap_or_default();
        Ok(X509Svid {
            spiffe_id: id.clone(),
            chain: std::iter::once(der)
                .chain(ca.intermediates().map(<[u8]>::to_vec))
                .collect(),
            not_after: from_unix_seconds(unix_seconds(not_after)),
            serial_hex,
            authority_id: ca.meta.id.as_str().into(),
        })
    }

    /// Signs a CA certificate for a downstream server's `public_key` with
    /// the active CA: this trust domain, no path, living `ttl` (or as long
    /// as the active CA) and never past it. With the chain above it and
    /// the trust domain's roots.
    pub fn sign_downstream_ca(
        &self,
        downstream: &SpiffeId,
        public_key: &impl PublicKeyData,
        ttl: Option<Duration>,
    ) -> Result<SignedCa, CaError> {
        let snapshot = self.snapshot();
        let ca = active(&snapshot.authorities.x509).ok_or(CaError::Expired)?;
        // Whole seconds, so the cap below holds in the certificate too.
        let now = from_unix_seconds(unix_seconds(self.clock.now()));
        let left = time_left(ca.meta.not_after, now)?;
        let ttl = ttl.map_or(left, |t| t.min(left));
        let not_after = later(now, ttl, "the downstream CA notAfter")?;
        let not_before = earlier(now, self.lifetimes.backdate, "the back-dated notBefore")?
            .max(ca.meta.not_before);
        let mut params = ca_params(&snapshot.bundle.trust_domain, not_before, not_after)?;
        // A subject of its own: with its issuer's, path builders (OpenSSL)
        // would take it for a self-signed root.
        params.distinguished_name.push(
            rcgen::DnType::OrganizationalUnitName,
            downstream.to_string(),
        );
        let der = sign_leaf(&params, public_key, &*ca.issuer)?;
        self.x509_signatures.inc();
        Ok(SignedCa {
            chain: std::iter::once(der)
                .chain(ca.intermediates().map(<[u8]>::to_vec))
                .collect(),
            roots: snapshot.bundle.x509_authorities.clone(),
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
        let snapshot = self.snapshot();
        let Some(ca) = snapshot
            .authorities
            .x509
            .iter()
            .find(|x| x.meta.id == authority_id)
        else {
            return Ok(None);
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
            .signed_by(&*ca.issuer)
            .map_err(|e| CaError::Key(format!("signing the CRL: {e}")))?;
        Ok(Some(crl.der().to_vec()))
    }
}
