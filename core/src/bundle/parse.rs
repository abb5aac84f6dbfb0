//! A peer trust domain's bundle as it arrives (a SPIFFE bundle document, or
//! PEM CA certificates), parsed once into a [`Bundle`]: every key checked,
//! nothing of it trusted until it is.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{cert_public_key, Bundle, JwtAuthority};
use crate::jwt::{Jwk, JwkSet, JwtPublicKey};
use crate::TrustDomain;

/// Keys a bundle may hold: more is refused, not parsed.
pub const MAX_KEYS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleParseError {
    #[error("not a SPIFFE bundle (JSON): {0}")]
    Json(String),
    #[error("a bundle holds at most {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("key {index}: no \"use\"")]
    MissingUse { index: usize },
    #[error("key {index}: an x509-svid key holds exactly one certificate in x5c")]
    X5cCount { index: usize },
    #[error("key {index}: x5c: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("key {index}: the key does not match its certificate")]
    KeyMismatch { index: usize },
    #[error("key {index}: a jwt-svid key needs a kid")]
    MissingKid { index: usize },
    #[error("key {index}: {reason}")]
    BadKey { index: usize, reason: String },
    #[error("two jwt-svid keys have the kid {0:?}")]
    DuplicateKid(String),
    #[error("PEM: {0}")]
    Pem(String),
    #[error("certificate {index}: {reason}")]
    BadPemCertificate { index: usize, reason: String },
}

/// A parsed SPIFFE bundle document and what it says of refetching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedBundle {
    pub bundle: Bundle,
    /// `spiffe_refresh_hint`, seconds.
    pub refresh_hint: Option<u64>,
}

/// The certificate must parse and be a CA (it is a trust anchor).
fn ca_certificate(der: &[u8]) -> Result<(), String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".into());
    }
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| e.to_string())?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err("not a CA certificate (basicConstraints cA)".into());
    }
    Ok(())
}

/// Parses `json` as the bundle of `td`. Keys of a `use` other than
/// `x509-svid` and `jwt-svid` are skipped (the standard lets bundles grow);
/// anything wrong with one of ours refuses the whole document.
pub fn parse_spiffe_bundle(
    td: &TrustDomain,
    json: &[u8],
) -> Result<ParsedBundle, BundleParseError> {
    let set: JwkSet =
        serde_json::from_slice(json).map_err(|e| BundleParseError::Json(e.to_string()))?;
    if set.keys.len() > MAX_KEYS {
        return Err(BundleParseError::TooManyKeys);
    }
    let mut x509_authorities = Vec::new();
    let mut jwt_authorities: Vec<JwtAuthority> = Vec::new();
    for (index, jwk) in set.keys.iter().enumerate() {
        match jwk.use_.as_deref() {
            None => return Err(BundleParseError::MissingUse { index }),
            Some("x509-svid") => x509_authorities.push(x509_key(index, jwk)?),
            Some("jwt-svid") => {
                let authority = jwt_key(index, jwk)?;
                if jwt_authorities.iter().any(|a| a.kid == authority.kid) {
                    return Err(BundleParseError::DuplicateKid(authority.kid));
                }
                jwt_authorities.push(authority);
            }
            Some(_) => {}
        }
    }
    Ok(ParsedBundle {
        bundle: Bundle {
            trust_domain: td.clone(),
            x509_authorities,
            jwt_authorities,
            sequence: set.spiffe_sequence.unwrap_or(0),
        },
        refresh_hint: set.spiffe_refresh_hint,
    })
}

fn x509_key(index: usize, jwk: &Jwk) -> Result<Vec<u8>, BundleParseError> {
    let [one] = jwk.x5c.as_deref().unwrap_or_default() else {
        return Err(BundleParseError::X5cCount { index });
    };
    let der = STANDARD
        .decode(one)
        .map_err(|e| BundleParseError::BadCertificate {
            index,
            reason: format!("not base64: {e}"),
        })?;
    ca_certificate(&der).map_err(|reason| BundleParseError::BadCertificate { index, reason })?;
    // A key given beside the certificate must be the certificate's.
    if jwk.x.is_some() || jwk.n.is_some() {
        let stated = JwtPublicKey::from_jwk(jwk).map_err(|e| BundleParseError::BadKey {
            index,
            reason: e.to_string(),
        })?;
        let certified = cert_public_key(&der).map_err(|e| BundleParseError::BadCertificate {
            index,
            reason: e.to_string(),
        })?;
        if stated != certified {
            return Err(BundleParseError::KeyMismatch { index });
        }
    }
    Ok(der)
}

fn jwt_key(index: usize, jwk: &Jwk) -> Result<JwtAuthority, BundleParseError> {
    let kid = jwk
        .kid
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or(BundleParseError::MissingKid { index })?;
    let public_key = JwtPublicKey::from_jwk(jwk).map_err(|e| BundleParseError::BadKey {
        index,
        reason: e.to_string(),
    })?;
    Ok(JwtAuthority {
        jwk: Jwk::from_public_key(&public_key, "jwt-svid", Some(kid.clone())),
        kid,
        public_key,
        // A peer's keys carry no expiry in the bundle.
        expires_at: 0,
    })
}

/// A bundle of `td` from PEM CA certificates (X.509 only, sequence 0).
pub fn bundle_from_pem(td: &TrustDomain, pem: &[u8]) -> Result<Bundle, BundleParseError> {
    let certs = crate::pem::decode_certs(pem).map_err(|e| BundleParseError::Pem(e.to_string()))?;
    if certs.len() > MAX_KEYS {
        return Err(BundleParseError::TooManyKeys);
    }
    for (index, der) in certs.iter().enumerate() {
        ca_certificate(der)
            .map_err(|reason| BundleParseError::BadPemCertificate { index, reason })?;
    }
    Ok(Bundle {
        trust_domain: td.clone(),
        x509_authorities: certs,
        jwt_authorities: Vec::new(),
        sequence: 0,
    })
}

#[cfg(test)]
mod tests;
