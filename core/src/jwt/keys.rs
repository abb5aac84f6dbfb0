//! JWT signing and verification keys over ring.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaPublicKeyComponents, UnparsedPublicKey};

use super::jwk::Jwk;
use super::JwtError;

/// The algorithms a JWT-SVID may use that ring can verify. ES512 (P-521) and
/// every non-SPIFFE algorithm (none, HS*, EdDSA) are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Es256,
    Es384,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
}

impl Alg {
    pub fn parse(s: &str) -> Result<Self, JwtError> {
        Ok(match s {
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            other => return Err(JwtError::Alg(other.to_owned())),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
        }
    }
}

/// A public key from a bundle, ready to verify signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtPublicKey {
    /// Uncompressed SEC1 point.
    P256(Vec<u8>),
    P384(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

impl JwtPublicKey {
    /// A stable, unambiguous encoding (algorithm tag, then each part
    /// length-prefixed): what a digest of keys is taken over, so it cannot
    /// change with a `Debug` format.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut part = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        match self {
            JwtPublicKey::P256(point) => {
                part(b"P-256");
                part(point);
            }
            JwtPublicKey::P384(point) => {
                part(b"P-384");
                part(point);
            }
            JwtPublicKey::Rsa { n, e } => {
                part(b"RSA");
                part(n);
                part(e);
            }
        }
        out
    }

    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JwtError> {
        let b64 = |v: &Option<String>, name: &str| -> Result<Vec<u8>, JwtError> {
            let s = v
                .as_deref()
                .ok_or_else(|| JwtError::BadJwk(format!("missing {name}")))?;
            URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| JwtError::BadJwk(format!("{name} is not base64url")))
        };
        match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let (x, y) = (b64(&jwk.x, "x")?, b64(&jwk.y, "y")?);
                let len = if crv == "P-256" { 32 } else { 48 };
                if x.len() != len || y.len() != len {
                    return Err(JwtError::BadJwk(format!(
                        "{crv} coordinates must be {len} bytes"
                    )));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Ok(if crv == "P-256" {
                    JwtPublicKey::P256(point)
                } else {
                    JwtPublicKey::P384(point)
                })
            }
            ("EC", crv) => Err(JwtError::BadJwk(format!("unsupported curve {crv:?}"))),
            ("RSA", _) => Ok(JwtPublicKey::Rsa {
                n: b64(&jwk.n, "n")?,
                e: b64(&jwk.e, "e")?,
            }),
            (kty, _) => Err(JwtError::BadJwk(format!("unsupported kty {kty:?}"))),
        }
    }

    /// Verifies `sig` over `msg` with `alg`; the key type must fit the alg.
    pub fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> Result<(), JwtError> {
        let mismatch = || JwtError::KeyAlgMismatch(self.kind().into(), alg.as_str().into());
        let ok = match (self, alg) {
            (JwtPublicKey::P256(p), Alg::Es256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, p).verify(msg, sig)
            }
            (JwtPublicKey::P384(p), Alg::Es384) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, p).verify(msg, sig)
            }
            (JwtPublicKey::Rsa { n, e }, alg) => {
                let params = match alg {
                    Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(mismatch()),
                };
                RsaPublicKeyComponents { n, e }.verify(params, msg, sig)
            }
            _ => return Err(mismatch()),
        };
        ok.map_err(|_| JwtError::BadSignature)
    }

    fn kind(&self) -> &'static str {
        match self {
            JwtPublicKey::P256(_) => "EC P-256",
            JwtPublicKey::P384(_) => "EC P-384",
            JwtPublicKey::Rsa { .. } => "RSA",
        }
    }
}

/// An ES256 signing key with its key id.
pub struct JwtSigner {
    kid: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for JwtSigner {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// A new random P-256 key; returns the signer and its PKCS#8 DER for storage.
    pub fn generate(kid: String) -> Result<(Self, Vec<u8>), JwtError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| JwtError::Sign("key generation failed".into()))?;
        let der = pkcs8.as_ref().to_vec();
        Ok((Self::from_pkcs8(kid, &der)?, der))
    }

    pub fn from_pkcs8(kid: String, pkcs8: &[u8]) -> Result<Self, JwtError> {
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                .map_err(|_| JwtError::Sign("not a P-256 PKCS#8 key".into()))?;
        Ok(Self { kid, key, rng })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> JwtPublicKey {
        JwtPublicKey::P256(self.key.public_key().as_ref().to_vec())
    }

    /// The `jwt-svid` JWK for the bundle.
    pub fn jwk(&self) -> Jwk {
        Jwk::from_public_key(&self.public_key(), "jwt-svid", Some(self.kid.clone()))
    }

    pub(super) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, JwtError> {
        self.key
            .sign(&self.rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| JwtError::Sign("ECDSA signing failed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::JwtPublicKey;

    #[test]
    fn canonical_bytes_tell_every_key_apart() {
        let keys = [
            JwtPublicKey::P256(vec![4, 1, 2]),
            JwtPublicKey::P384(vec![4, 1, 2]),
            JwtPublicKey::Rsa {
                n: vec![1, 2],
                e: vec![3],
            },
            // The same bytes split differently between n and e.
            JwtPublicKey::Rsa {
                n: vec![1],
                e: vec![2, 3],
            },
        ];
        for (i, a) in keys.iter().enumerate() {
            assert_eq!(a.canonical_bytes(), a.clone().canonical_bytes());
            for b in &keys[i + 1..] {
                assert_ne!(a.canonical_bytes(), b.canonical_bytes(), "{a:?} {b:?}");
            }
        }
        assert_eq!(
            keys[0].canonical_bytes(),
            [
                &5u64.to_be_bytes()[..],
                b"P-256",
                &3u64.to_be_bytes(),
                &[4, 1, 2]
            ]
            .concat()
        );
    }
}
