//! JWT-SVID parsing and validation against a fixed bundle: never panics, and
//! a token that validates names a trust domain we hold and the audience asked.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use signet_core::jwt::{
    parse_unverified, validate_jwt_svid, JwtBundles, JwtSigner, ValidationOptions,
};
use signet_core::TrustDomain;

/// One P-256 key `k1` for `example.org`, made once per process.
fn bundles() -> &'static JwtBundles {
    static BUNDLES: OnceLock<JwtBundles> = OnceLock::new();
    BUNDLES.get_or_init(|| {
        let Ok((signer, _)) = JwtSigner::generate("k1".into()) else {
            panic!("key generation failed");
        };
        let mut keys = HashMap::new();
        keys.insert("k1".to_string(), signer.public_key());
        let mut bundles = HashMap::new();
        let Ok(td) = TrustDomain::new("example.org") else {
            panic!("fixed trust domain is valid");
        };
        bundles.insert(td, keys);
        bundles
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_unverified(token);
    let opts = ValidationOptions {
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
        leeway: Duration::from_secs(30),
    };
    if let Ok(v) = validate_jwt_svid(token, "svc", bundles(), opts) {
        // Only a token signed by k1 can get here; the fuzzer has no key.
        panic!("forged token validated: {v:?}");
    }
});
