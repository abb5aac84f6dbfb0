//! The key material of an authority: an X.509 CA (certificate, key, parsed
//! issuer) or a JWT key, generated here or loaded from what the datastore
//! and the key manager hold. Runs on the blocking pool (key generation).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::PublicKeyData;
use signet_core::clock::{from_unix_seconds, unix_seconds};
use signet_core::jwt::JwtSigner;
use signet_core::x509::{
    ca_params, cert_info, leaf_params, public_key_matches_leaf, sign_leaf, validate_x509_svid,
    X509Error,
};
use signet_core::TrustDomain;

use super::issuer::{self, CaIssuer, SharedKey};
use super::key_manager::PrivateKey;
use super::rotation::{HasMeta, Meta};
use super::upstream::disk::check_signing_ca;
use super::upstream::SignedCa;
use super::{authority_id, earlier, later, AuthorityState, CaError};

/// An X.509 CA of the trust domain: a self-signed root, or an
/// intermediate under an upstream authority's roots.
#[derive(Clone)]
pub struct X509Authority {
    pub meta: Meta,
    pub cert_der: Vec<u8>,
    pub issuer: Arc<CaIssuer>,
    /// The intermediates between `cert_der` and the upstream roots (a
    /// nested upstream's own CA); empty when the roots signed it.
    pub upstream_chain: Vec<Vec<u8>>,
    /// The upstream roots `cert_der` chains to (the bundle holds them);
    /// empty for a self-signed CA.
    pub upstream_roots: Vec<Vec<u8>>,
}

impl X509Authority {
    /// The certificates the trust bundle holds for it.
    pub fn bundle_certs(&self) -> impl Iterator<Item = &[u8]> {
        let certs = if self.upstream_roots.is_empty() {
            std::slice::from_ref(&self.cert_der)
        } else {
            self.upstream_roots.as_slice()
        };
        certs.iter().map(Vec::as_slice)
    }

    /// The certificates an SVID it signs is sent with, after the leaf.
    pub fn intermediates(&self) -> impl Iterator<Item = &[u8]> {
        let under_upstream = !self.upstream_roots.is_empty();
        std::iter::once(self.cert_der.as_slice())
            .chain(self.upstream_chain.iter().map(Vec::as_slice))
            .filter(move |_| under_upstream)
    }
}

/// A JWT signing key.
#[derive(Clone)]
pub struct JwtKey {
    pub meta: Meta,
    pub signer: Arc<JwtSigner>,
}

/// A new authority and its private key, for the key manager to keep.
pub enum Generated {
    X509(X509Authority, PrivateKey),
    Jwt(JwtKey, PrivateKey),
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

/// A new CA for `td` with the P-256 `private` key, valid from 30 s ago for
/// `ttl` (no longer than the upstream root, when there is one: it signs the
/// CA), in `state`.
pub fn generate_x509(
    td: &TrustDomain,
    ttl: Duration,
    now: SystemTime,
    state: AuthorityState,
    upstream: Option<&super::upstream::UpstreamCa>,
    private: PrivateKey,
) -> Result<Generated, CaError> {
    let key = SharedKey::from_private(&private)?;
    // Whole seconds, so the times read back from the certificate match.
    let now = from_unix_seconds(unix_seconds(now));
    let not_before = earlier(now, Duration::from_secs(30), "the CA notBefore")?;
    let mut not_after = later(now, ttl, "the CA notAfter (ca_ttl)")?;
    if let Some(up) = upstream {
        not_after = not_after.min(up.not_after);
        if not_after <= now {
            return Err(CaError::FailedPrecondition(
                "the upstream authority's root has expired".into(),
            ));
        }
    }
    let params = ca_params(td, not_before, not_after)?;
    let cert = match upstream {
        None => params.self_signed(&key),
        Some(up) => params.signed_by(&key, &*up.issuer),
    }
    .map_err(X509Error::from)?;
    let cert_der = cert.der().to_vec();
    let issuer = issuer::build(&cert_der, key)?;
    Ok(Generated::X509(
        X509Authority {
            meta: Meta {
                id: authority_id(&cert_der),
                state,
                tainted: false,
                not_before,
                not_after,
            },
            cert_der,
            issuer,
            upstream_chain: Vec::new(),
            upstream_roots: upstream
                .map(|up| vec![up.cert_der.clone()])
                .unwrap_or_default(),
        },
        private,
    ))
}

/// A new JWT key living `ttl` (as long as a CA), in `state`, signing with
/// `private`.
pub fn generate_jwt(
    ttl: Duration,
    now: SystemTime,
    state: AuthorityState,
    private: PrivateKey,
) -> Result<Generated, CaError> {
    let kid = hex::encode(rand::random::<[u8; 16]>());
    let signer = jwt_signer(kid.clone(), &private)?;
    let now = from_unix_seconds(unix_seconds(now));
    Ok(Generated::Jwt(
        JwtKey {
            meta: Meta {
                id: kid,
                state,
                tainted: false,
                not_before: now,
                not_after: later(now, ttl, "the JWT key's end (ca_ttl)")?,
            },
            signer: Arc::new(signer),
        },
        private,
    ))
}

/// The X.509 authority `meta` names, from its certificate and key; `None`
/// when the certificate is for another trust domain (the CA is replaced).
pub fn load_x509(
    meta: Meta,
    cert_der: Vec<u8>,
    upstream: SignedCa,
    private: &PrivateKey,
    td: &TrustDomain,
) -> Result<Option<X509Authority>, CaError> {
    let key = SharedKey::from_private(private)?;
    public_key_matches_leaf(&cert_der, key.der_bytes())?;
    let info = cert_info(&cert_der)?;
    if info.spiffe_id.as_ref().map(|id| id.trust_domain()) != Some(td) {
        return Ok(None);
    }
    if authority_id(&cert_der) != meta.id {
        return Err(CaError::Key(format!(
            "X.509 authority {}: the stored certificate is another one",
            meta.id
        )));
    }
    let issuer = issuer::build(&cert_der, key)?;
    Ok(Some(X509Authority {
        meta: Meta {
            not_before: info.not_before,
            not_after: info.not_after,
            ..meta
        },
        cert_der,
        issuer,
        upstream_chain: upstream.chain,
        upstream_roots: upstream.roots,
    }))
}

/// The CA an upstream Signet server signed for `private`, in `state`, once
/// it is shown to be ours: our key, our trust domain, a signing CA, and a
/// leaf it signs validating against the roots at `now`.
pub fn adopt_signed_x509(
    td: &TrustDomain,
    state: AuthorityState,
    signed: SignedCa,
    private: PrivateKey,
    now: SystemTime,
) -> Result<Generated, CaError> {
    let refused = |why: String| CaError::Upstream(format!("refused the signed CA: {why}"));
    let key = SharedKey::from_private(&private)?;
    let Some((cert_der, above)) = signed.chain.split_first() else {
        return Err(refused("the chain is empty".into()));
    };
    if signed.roots.is_empty() {
        return Err(refused("no roots came with it".into()));
    }
    public_key_matches_leaf(cert_der, key.der_bytes())
        .map_err(|e| refused(format!("not for our key: {e}")))?;
    check_signing_ca(cert_der).map_err(refused)?;
    let info = cert_info(cert_der)?;
    if info.spiffe_id.as_ref().map(|id| id.trust_domain()) != Some(td) {
        return Err(refused(format!("it is not a CA of {td}")));
    }
    let issuer = issuer::build(cert_der, key)?;
    prove_chain(td, &issuer, &signed.chain, &signed.roots, now).map_err(refused)?;
    Ok(Generated::X509(
        X509Authority {
            meta: Meta {
                id: authority_id(cert_der),
                state,
                tainted: false,
                not_before: info.not_before,
                not_after: info.not_after,
            },
            cert_der: cert_der.clone(),
            issuer,
            upstream_chain: above.to_vec(),
            upstream_roots: signed.roots,
        },
        private,
    ))
}

/// Signs a throwaway leaf with the new CA and validates it, with the
/// chain, against the roots: the whole path checked as agents will.
fn prove_chain(
    td: &TrustDomain,
    issuer: &CaIssuer,
    chain: &[Vec<u8>],
    roots: &[Vec<u8>],
    now: SystemTime,
) -> Result<(), String> {
    let id = td
        .id("/signet/downstream-check")
        .map_err(|e| e.to_string())?;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let not_after = now + Duration::from_secs(60);
    let params = leaf_params(&id, &[], now, not_after).map_err(|e| e.to_string())?;
    let leaf = sign_leaf(&params, &key, issuer).map_err(|e| e.to_string())?;
    let full: Vec<Vec<u8>> = std::iter::once(leaf).chain(chain.iter().cloned()).collect();
    validate_x509_svid(&full, roots, now)
        .map(|_| ())
        .map_err(|e| format!("it does not chain to the upstream roots: {e}"))
}

/// The JWT key `meta` names, from its private key.
pub fn load_jwt(meta: Meta, private: &PrivateKey) -> Result<JwtKey, CaError> {
    let signer = jwt_signer(meta.id.clone(), private)?;
    Ok(JwtKey {
        meta,
        signer: Arc::new(signer),
    })
}

fn jwt_signer(kid: String, private: &PrivateKey) -> Result<JwtSigner, CaError> {
    let signer = match private {
        PrivateKey::Software(der) => JwtSigner::from_pkcs8(kid.clone(), der),
        PrivateKey::Held(key) => JwtSigner::held(kid.clone(), key.clone()),
    };
    signer.map_err(|e| CaError::Key(format!("JWT key {kid}: {e}")))
}
