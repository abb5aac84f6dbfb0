//! TPM2_MakeCredential in Rust (TPM 2.0 Part 1, 24 "Credential
//! Protection"), for an RSA 2048 EK with the default template's AES-128-CFB
//! and SHA-256: the credential is sealed to the EK and bound to the Name of
//! the attestation key, so only TPM2_ActivateCredential in the TPM that
//! holds both recovers it.

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rand::RngCore;
use rsa::{BigUint, Oaep, RsaPublicKey};
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the EK is not a usable RSA key: {0}")]
    EkKey(String),
    #[error("sealing the seed to the EK failed: {0}")]
    Seal(String),
}

/// The EK as an RSA public key.
pub fn ek_key(modulus: &[u8], exponent: u32) -> Result<RsaPublicKey, CredentialError> {
    RsaPublicKey::new(BigUint::from_bytes_be(modulus), BigUint::from(exponent))
        .map_err(|e| CredentialError::EkKey(e.to_string()))
}

/// `TPM2B_ID_OBJECT` and `TPM2B_ENCRYPTED_SECRET` contents (without their
/// size prefixes, as tss-esapi takes them).
pub struct Sealed {
    pub id_object: Vec<u8>,
    pub encrypted_secret: Vec<u8>,
}

/// Seals `credential` (at most 64 bytes) to `ek`, for the object `name`.
pub fn make_credential(
    ek: &RsaPublicKey,
    name: &[u8],
    credential: &[u8],
) -> Result<Sealed, CredentialError> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(seed.as_mut());
    let encrypted_secret = ek
        .encrypt(
            &mut rand::rngs::OsRng,
            Oaep::new_with_label::<Sha256, _>("IDENTITY\0"),
            seed.as_ref(),
        )
        .map_err(|e| CredentialError::Seal(e.to_string()))?;
    let sym_key = kdfa(seed.as_ref(), "STORAGE", name, 128);
    let hmac_key = kdfa(seed.as_ref(), "INTEGRITY", &[], 256);
    // The plaintext is a TPM2B_DIGEST of the credential.
    let mut enc_identity = (credential.len() as u16).to_be_bytes().to_vec();
    enc_identity.extend_from_slice(credential);
    cfb_mode::Encryptor::<aes::Aes128>::new(sym_key.as_slice().into(), &[0u8; 16].into())
        .encrypt(&mut enc_identity);
    let integrity = hmac_sha256(&hmac_key, &[&enc_identity, name]);
    let mut id_object = (integrity.len() as u16).to_be_bytes().to_vec();
    id_object.extend_from_slice(&integrity);
    id_object.extend_from_slice(&enc_identity);
    Ok(Sealed {
        id_object,
        encrypted_secret,
    })
}

pub(super) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length; the error arm cannot happen.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// KDFa (Part 1, 11.4.10.2) with HMAC-SHA-256 in counter mode; the second
/// context is empty wherever the credential protocol uses it.
pub(super) fn kdfa(
    key: &[u8],
    label: &str,
    context: &[u8],
    bits: u32,
) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = zeroize::Zeroizing::new(Vec::new());
    let mut counter: u32 = 1;
    while out.len() * 8 < bits as usize {
        out.extend_from_slice(&hmac_sha256(
            key,
            &[
                &counter.to_be_bytes(),
                label.as_bytes(),
                &[0],
                context,
                &bits.to_be_bytes(),
            ],
        ));
        counter += 1;
    }
    out.truncate(bits as usize / 8);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_matches_the_spec_construction() {
        // One block: HMAC(key, 00000001 || "STORAGE" || 00 || ctx || 00000080).
        let expected = hmac_sha256(
            b"seed",
            &[&[0, 0, 0, 1], b"STORAGE", &[0], b"name", &[0, 0, 0, 128]],
        );
        assert_eq!(
            kdfa(b"seed", "STORAGE", b"name", 128).as_slice(),
            &expected[..16]
        );
        assert_eq!(kdfa(b"seed", "INTEGRITY", &[], 256).len(), 32);
        assert_eq!(kdfa(b"seed", "X", &[], 512).len(), 64);
    }

    #[test]
    fn the_id_object_carries_integrity_then_the_encrypted_credential() {
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let sealed = make_credential(&key.to_public_key(), &[0, 0x0b, 1, 2], &[9; 32]).unwrap();
        assert_eq!(sealed.encrypted_secret.len(), 256);
        assert_eq!(sealed.id_object[..2], [0, 32]);
        assert_eq!(sealed.id_object.len(), 2 + 32 + 2 + 32);
        let seed = key
            .decrypt(
                Oaep::new_with_label::<Sha256, _>("IDENTITY\0"),
                &sealed.encrypted_secret,
            )
            .unwrap();
        assert_eq!(seed.len(), 32);
    }
}
