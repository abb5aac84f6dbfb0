//! JWT signing and verification keys over ring.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    self, EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey,
};

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

/// The key types a server's JWT authorities can have (`jwt_key_type`,
/// SPIRE's names): P-256 (ES256) by default; RSA 2048 (RS256) for clouds
/// whose workload-identity federation prefers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum JwtKeyType {
    #[default]
    #[serde(rename = "ec-p256")]
    EcP256,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

impl JwtKeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            JwtKeyType::EcP256 => "ec-p256",
            JwtKeyType::Rsa2048 => "rsa-2048",
        }
    }

    /// The algorithm its tokens are signed with.
    pub fn alg(self) -> Alg {
        match self {
            JwtKeyType::EcP256 => Alg::Es256,
            JwtKeyType::Rsa2048 => Alg::Rs256,
        }
    }
}

/// A private key held where it cannot be read (an HSM's token): it only
/// signs. Calls may block on the device.
pub trait HeldKey: Send + Sync + 'static {
    fn public_key(&self) -> &JwtPublicKey;
    /// P-256: ECDSA over SHA-256(msg) as r‖s (64 bytes, as JWS wants it);
    /// RSA: PKCS#1 v1.5 over SHA-256(msg).
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String>;
    /// For the key manager that made it to find its own handle.
    fn as_any(&self) -> &dyn std::any::Any;
}

enum SigningKey {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Held(std::sync::Arc<dyn HeldKey>),
}

/// A new random private key of `key_type` as PKCS#8 DER (RSA takes
/// ~0.1-1 s: never on a runtime thread).
pub fn generate_pkcs8(key_type: JwtKeyType) -> Result<Vec<u8>, JwtError> {
    Ok(match key_type {
        JwtKeyType::EcP256 => EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map_err(|_| JwtError::Sign("key generation failed".into()))?
        .as_ref()
        .to_vec(),
        JwtKeyType::Rsa2048 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                .map_err(|e| JwtError::Sign(format!("RSA key generation failed: {e}")))?;
            key.to_pkcs8_der()
                .map_err(|e| JwtError::Sign(format!("RSA key encoding failed: {e}")))?
                .as_bytes()
                .to_vec()
        }
    })
}

/// A JWT-SVID signing key (ES256 or RS256) with its key id.
pub struct JwtSigner {
    kid: String,
    key: SigningKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for JwtSigner {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// A new random P-256 key; returns the signer and its PKCS#8 DER for storage.
    pub fn generate(kid: String) -> Result<(Self, Vec<u8>), JwtError> {
        Self::generate_as(kid, JwtKeyType::EcP256)
    }

    /// A new random key of `key_type` (RSA takes ~0.1-1 s: never on a
    /// runtime thread); the signer and its PKCS#8 DER for storage.
    pub fn generate_as(kid: String, key_type: JwtKeyType) -> Result<(Self, Vec<u8>), JwtError> {
        let der = generate_pkcs8(key_type)?;
        Ok((Self::from_pkcs8(kid, &der)?, der))
    }

    /// A signer whose key stays in its token: ES256 for a P-256 key, RS256
    /// for RSA.
    pub fn held(kid: String, key: std::sync::Arc<dyn HeldKey>) -> Result<Self, JwtError> {
        if !matches!(
            key.public_key(),
            JwtPublicKey::P256(_) | JwtPublicKey::Rsa { .. }
        ) {
            return Err(JwtError::Sign(format!(
                "a held {} key cannot sign JWT-SVIDs",
                key.public_key().kind()
            )));
        }
        Ok(Self {
            kid,
            key: SigningKey::Held(key),
            rng: SystemRandom::new(),
        })
    }

    /// A P-256 or RSA (2048 to 8192 bits) key from its PKCS#8 DER.
    pub fn from_pkcs8(kid: String, pkcs8: &[u8]) -> Result<Self, JwtError> {
        let rng = SystemRandom::new();
        let key = match EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &rng,
        ) {
            Ok(ec) => SigningKey::Ec(ec),
            Err(_) => SigningKey::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| {
                JwtError::Sign(format!("neither a P-256 nor a usable RSA PKCS#8 key ({e})"))
            })?),
        };
        Ok(Self { kid, key, rng })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Alg {
        match &self.key {
            SigningKey::Ec(_) => Alg::Es256,
            SigningKey::Rsa(_) => Alg::Rs256,
            SigningKey::Held(k) => match k.public_key() {
                JwtPublicKey::Rsa { .. } => Alg::Rs256,
                _ => Alg::Es256,
            },
        }
    }

    pub fn public_key(&self) -> JwtPublicKey {
        match &self.key {
            SigningKey::Ec(k) => JwtPublicKey::P256(k.public_key().as_ref().to_vec()),
            SigningKey::Rsa(k) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                JwtPublicKey::Rsa { n: c.n, e: c.e }
            }
            SigningKey::Held(k) => k.public_key().clone(),
        }
    }

    /// The `jwt-svid` JWK for the bundle.
    pub fn jwk(&self) -> Jwk {
        Jwk::from_public_key(&self.public_key(), "jwt-svid", Some(self.kid.clone()))
    }

    pub(super) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, JwtError> {
        match &self.key {
            SigningKey::Ec(k) => k
                .sign(&self.rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| JwtError::Sign("ECDSA signing failed".into())),
            SigningKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &self.rng, msg, &mut sig)
                    .map_err(|_| JwtError::Sign("RSA signing failed".into()))?;
                Ok(sig)
            }
            SigningKey::Held(k) => k.sign(msg).map_err(JwtError::Sign),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Alg, JwtKeyType, JwtPublicKey, JwtSigner};

    #[test]
    fn each_key_type_signs_what_its_public_key_verifies_and_reloads_from_pkcs8() {
        for ty in [JwtKeyType::EcP256, JwtKeyType::Rsa2048] {
            let (signer, der) = JwtSigner::generate_as("k".into(), ty).unwrap();
            assert_eq!(signer.alg(), ty.alg());
            let sig = signer.sign(b"msg").unwrap();
            let public = signer.public_key();
            public.verify(ty.alg(), b"msg", &sig).unwrap();
            assert!(public.verify(ty.alg(), b"other", &sig).is_err());
            let again = JwtSigner::from_pkcs8("k".into(), &der).unwrap();
            assert_eq!(again.public_key(), public);
            assert_eq!(again.alg(), ty.alg());
        }
        let (rsa, _) = JwtSigner::generate_as("r".into(), JwtKeyType::Rsa2048).unwrap();
        let JwtPublicKey::Rsa { n, e } = rsa.public_key() else {
            panic!("not RSA")
        };
        assert_eq!((n.len(), e.as_slice()), (256, &[1, 0, 1][..]));
        assert_eq!(Alg::Rs256.as_str(), "RS256");
        assert!(JwtSigner::from_pkcs8("x".into(), b"junk").is_err());
    }

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
