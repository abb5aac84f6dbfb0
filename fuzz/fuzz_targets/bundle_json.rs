//! The SPIFFE bundle JSON (a JWK Set) and each key in it: never panics, and a
//! key that converts converts back to a JWK giving the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::jwt::{Jwk, JwkSet, JwtPublicKey};

fuzz_target!(|data: &[u8]| {
    let Ok(set) = serde_json::from_slice::<JwkSet>(data) else {
        return;
    };
    for jwk in &set.keys {
        if let Ok(key) = JwtPublicKey::from_jwk(jwk) {
            let again = Jwk::from_public_key(&key, "jwt-svid", jwk.kid.clone());
            assert_eq!(JwtPublicKey::from_jwk(&again).as_ref(), Ok(&key));
        }
    }
    if let Ok(json) = serde_json::to_vec(&set) {
        assert_eq!(
            serde_json::from_slice::<JwkSet>(&json).ok().as_ref(),
            Some(&set)
        );
    }
});
