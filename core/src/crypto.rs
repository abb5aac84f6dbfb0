//! The one crypto provider: ring, through rustls and webpki. Certificate
//! chains (X.509-SVIDs, x509pop host certificates) and every TLS config of
//! both daemons take their algorithms from here, so what Signet accepts is
//! decided in one place.

use std::sync::Arc;

use rustls_pki_types::SignatureVerificationAlgorithm;

/// Signature algorithms a certificate chain may use: ECDSA P-256/P-384,
/// Ed25519, RSA PKCS#1 v1.5 and PSS with 2048-8192-bit keys.
pub static SIGNATURE_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// The rustls provider every TLS config is built with.
pub fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An ECDSA signature r‖s (as tokens and JWS give it) in the DER form X.509
/// wants: SEQUENCE { INTEGER r, INTEGER s }.
pub fn ecdsa_der(fixed: &[u8]) -> Option<Vec<u8>> {
    if fixed.is_empty() || !fixed.len().is_multiple_of(2) || fixed.len() > 132 {
        return None;
    }
    let (r, s) = fixed.split_at(fixed.len() / 2);
    let int = |v: &[u8]| {
        let v = &v[v.iter().take_while(|b| **b == 0).count().min(v.len() - 1)..];
        let mut out = vec![0x02];
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push((v.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    };
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use ring::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};

    use super::ecdsa_der;

    #[test]
    fn fixed_signatures_become_der_that_verifies() {
        let rng = ring::rand::SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.as_ref(),
            &rng,
        )
        .unwrap();
        let public = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, key.public_key());
        // Enough signatures that some r or s has its high bit set or a
        // leading zero.
        for i in 0..64u8 {
            let fixed = key.sign(&rng, &[i]).unwrap();
            let der = ecdsa_der(fixed.as_ref()).unwrap();
            public.verify(&[i], &der).unwrap();
        }
        assert!(ecdsa_der(&[]).is_none());
        assert!(ecdsa_der(&[1, 2, 3]).is_none());
    }
}
