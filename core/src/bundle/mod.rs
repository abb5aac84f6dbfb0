//! The SPIFFE bundle of a trust domain: X.509 authorities and JWT keys, as
//! the server publishes them and the agent receives them, with the JWK Set
//! encoding of the SPIFFE Trust Domain and Bundle standard.

mod parse;

use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

pub use parse::{bundle_from_pem, parse_spiffe_bundle, BundleParseError, ParsedBundle, MAX_KEYS};

use crate::jwt::{Jwk, JwkSet, JwtPublicKey};
use crate::TrustDomain;

/// The certificates and keys a peer trusts for one trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub trust_domain: TrustDomain,
    /// DER CA certificates.
    pub x509_authorities: Vec<Vec<u8>>,
    /// Public keys that verify JWT-SVIDs.
    pub jwt_authorities: Vec<JwtAuthority>,
    /// Increases whenever the authorities change.
    pub sequence: u64,
}

impl Bundle {
    /// `(kid, key)` pairs, as [`spiffe_bundle`] and [`jwt_jwks`] take them.
    pub fn jwt_keys(&self) -> Vec<(String, JwtPublicKey)> {
        self.jwt_authorities
            .iter()
            .map(|a| (a.kid.clone(), a.public_key.clone()))
            .collect()
    }

    /// The SPIFFE bundle document (JSON) of this bundle.
    pub fn to_spiffe_document(&self, refresh_hint_secs: u64) -> Result<String, BundleError> {
        let set = spiffe_bundle(
            &self.x509_authorities,
            &self.jwt_keys(),
            self.sequence,
            refresh_hint_secs,
        )?;
        serde_json::to_string(&set).map_err(|e| BundleError::Parse(e.to_string()))
    }

    /// A digest of the set of authorities (not their order, not the
    /// sequence): when it differs from the stored one, the bundle changed
    /// and its sequence must increase. An activation reorders, not changes.
    pub fn fingerprint(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut x509: Vec<&Vec<u8>> = self.x509_authorities.iter().collect();
        x509.sort();
        let mut jwt: Vec<&JwtAuthority> = self.jwt_authorities.iter().collect();
        jwt.sort_by(|a, b| a.kid.cmp(&b.kid));
        for der in x509 {
            ctx.update(b"x509\0");
            ctx.update(&(der.len() as u64).to_be_bytes());
            ctx.update(der);
        }
        for a in jwt {
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

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("authority certificate could not be parsed: {0}")]
    Parse(String),
    #[error("authority key type is not supported in a JWK (only EC P-256/P-384 and RSA)")]
    UnsupportedKey,
}

/// The public key of a certificate, in the form JWKs carry.
pub fn cert_public_key(der: &[u8]) -> Result<JwtPublicKey, BundleError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| BundleError::Parse(e.to_string()))?;
    let spki = cert.public_key();
    match spki
        .parsed()
        .map_err(|e| BundleError::Parse(e.to_string()))?
    {
        PublicKey::EC(point) => {
            let data = point.data().to_vec();
            match data.len() {
                65 => Ok(JwtPublicKey::P256(data)),
                97 => Ok(JwtPublicKey::P384(data)),
                _ => Err(BundleError::UnsupportedKey),
            }
        }
        PublicKey::RSA(rsa) => Ok(JwtPublicKey::Rsa {
            n: strip_leading_zeros(rsa.modulus).to_vec(),
            e: strip_leading_zeros(rsa.exponent).to_vec(),
        }),
        _ => Err(BundleError::UnsupportedKey),
    }
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(start..).unwrap_or_default()
}

/// The SPIFFE bundle document: one `x509-svid` JWK per CA certificate and
/// one `jwt-svid` JWK per JWT key.
pub fn spiffe_bundle(
    x509_authorities: &[Vec<u8>],
    jwt_keys: &[(String, JwtPublicKey)],
    sequence: u64,
    refresh_hint_secs: u64,
) -> Result<JwkSet, BundleError> {
    let mut keys = Vec::with_capacity(x509_authorities.len() + jwt_keys.len());
    for der in x509_authorities {
        keys.push(Jwk::x509_authority(der, &cert_public_key(der)?));
    }
    for (kid, key) in jwt_keys {
        keys.push(Jwk::from_public_key(key, "jwt-svid", Some(kid.clone())));
    }
    Ok(JwkSet {
        keys,
        spiffe_sequence: Some(sequence),
        spiffe_refresh_hint: Some(refresh_hint_secs),
    })
}

/// A plain JWKS of `jwt-svid` keys, as the Workload API's JWT bundles carry.
pub fn jwt_jwks(jwt_keys: &[(String, JwtPublicKey)]) -> JwkSet {
    JwkSet {
        keys: jwt_keys
            .iter()
            .map(|(kid, key)| Jwk::from_public_key(key, "jwt-svid", Some(kid.clone())))
            .collect(),
        spiffe_sequence: None,
        spiffe_refresh_hint: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::jwt::JwtSigner;
    use crate::TrustDomain;

    #[test]
    fn bundle_carries_ca_and_jwt_keys() {
        let key = rcgen::KeyPair::generate().unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let now = SystemClock.now();
        let ca = crate::x509::ca_params(&td, now, now + Duration::from_secs(60))
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (signer, _) = JwtSigner::generate("kid-1".into()).unwrap();
        let doc = spiffe_bundle(
            &[ca.der().to_vec()],
            &[("kid-1".into(), signer.public_key())],
            7,
            300,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["spiffe_sequence"], 7);
        assert_eq!(json["spiffe_refresh_hint"], 300);
        let x509 = &json["keys"][0];
        assert_eq!(x509["use"], "x509-svid");
        assert_eq!(x509["kty"], "EC");
        assert_eq!(x509["crv"], "P-256");
        assert!(x509.get("kid").is_none());
        assert_eq!(x509["x5c"].as_array().unwrap().len(), 1);
        let jwt = &json["keys"][1];
        assert_eq!(jwt["use"], "jwt-svid");
        assert_eq!(jwt["kid"], "kid-1");
        assert_eq!(
            cert_public_key(ca.der()).unwrap(),
            JwtPublicKey::from_jwk(&doc.keys[0]).unwrap()
        );
    }
}
