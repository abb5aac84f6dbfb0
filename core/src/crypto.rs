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
