//! JSON Web Keys and key sets as SPIFFE bundles carry them.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::keys::JwtPublicKey;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Standard base64 DER certificates (not base64url), per RFC 7517.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
}

impl Jwk {
    pub fn from_public_key(key: &JwtPublicKey, use_: &str, kid: Option<String>) -> Jwk {
        let mut jwk = Jwk {
            kty: String::new(),
            use_: Some(use_.to_owned()),
            kid,
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            x5c: None,
        };
        match key {
            JwtPublicKey::P256(p) | JwtPublicKey::P384(p) => {
                let len = (p.len().saturating_sub(1)) / 2;
                let coords = p.get(1..).unwrap_or_default();
                let (x, y) = coords.split_at(len.min(coords.len()));
                jwk.kty = "EC".into();
                jwk.crv = Some(
                    if matches!(key, JwtPublicKey::P256(_)) {
                        "P-256"
                    } else {
                        "P-384"
                    }
                    .into(),
                );
                jwk.x = Some(URL_SAFE_NO_PAD.encode(x));
                jwk.y = Some(URL_SAFE_NO_PAD.encode(y));
            }
            JwtPublicKey::Rsa { n, e } => {
                jwk.kty = "RSA".into();
                jwk.n = Some(URL_SAFE_NO_PAD.encode(n));
                jwk.e = Some(URL_SAFE_NO_PAD.encode(e));
            }
        }
        jwk
    }

    /// An `x509-svid` JWK for a CA certificate: its public key plus `x5c`.
    pub fn x509_authority(cert_der: &[u8], key: &JwtPublicKey) -> Jwk {
        let mut jwk = Jwk::from_public_key(key, "x509-svid", None);
        jwk.x5c = Some(vec![STANDARD.encode(cert_der)]);
        jwk
    }
}

/// A JWK Set; as a SPIFFE bundle it also carries sequence and refresh hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JwkSet {
    #[serde(default)]
    pub keys: Vec<Jwk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_refresh_hint: Option<u64>,
}
