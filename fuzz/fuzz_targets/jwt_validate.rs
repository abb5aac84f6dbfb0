//! JWT-SVID validation against a fixed bundle. Half the inputs are raw
//! tokens (never validate: the fuzzer has no key); the other half are a
//! header and claims (JSON or not) that the bundle's own key signs, so the
//! checks after the signature (`exp`, `aud`, `sub`, `typ`, claim types,
//! `alg` against the key) are what is fuzzed. Never panics, and whatever
//! validates is a token a user would accept.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use signet_core::jwt::{
    parse_unverified, sign_compact, validate_jwt_svid, JwtBundles, JwtSigner, ValidationOptions,
};
use signet_core::TrustDomain;

/// One P-256 key `k1` for `example.org`, made once per process.
fn key() -> &'static (JwtSigner, JwtBundles) {
    static KEY: OnceLock<(JwtSigner, JwtBundles)> = OnceLock::new();
    KEY.get_or_init(|| {
        let Ok((signer, _)) = JwtSigner::generate("k1".into()) else {
            panic!("key generation failed");
        };
        let mut keys = HashMap::new();
        keys.insert("k1".to_string(), signer.public_key());
        let Ok(td) = TrustDomain::new("example.org") else {
            panic!("fixed trust domain is valid");
        };
        let bundles = HashMap::from([(td, keys)]);
        (signer, bundles)
    })
}

const NOW: u64 = 1_000_000;
const LEEWAY: u64 = 30;

fuzz_target!(|data: &[u8]| {
    let (signer, bundles) = key();
    let opts = ValidationOptions {
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(NOW),
        leeway: Duration::from_secs(LEEWAY),
    };
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        let _ = parse_unverified(token);
        if let Ok(v) = validate_jwt_svid(token, "svc", bundles, opts) {
            panic!("forged token validated: {v:?}");
        }
        return;
    }
    // Header and claims, split at the first NUL; signed by k1.
    let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let (header, claims) = rest.split_at(split);
    let claims = claims.get(1..).unwrap_or_default();
    let (Ok(header), Ok(claims)) = (
        serde_json::from_slice::<serde_json::Value>(header),
        serde_json::from_slice::<serde_json::Value>(claims),
    ) else {
        return;
    };
    let Ok(token) = sign_compact(signer, &header, &claims) else {
        return;
    };
    let Ok(v) = validate_jwt_svid(&token, "svc", bundles, opts) else {
        return;
    };
    // What validated: a header we accept, a subject in our trust domain,
    // the audience asked for, and a live expiry.
    assert_eq!(header["kid"], "k1");
    assert_eq!(header["alg"], "ES256");
    assert!(matches!(
        header.get("typ").and_then(|t| t.as_str()),
        None | Some("JWT" | "JOSE")
    ));
    assert_eq!(v.spiffe_id.trust_domain().as_str(), "example.org");
    assert_eq!(
        claims["sub"].as_str(),
        Some(v.spiffe_id.to_string().as_str())
    );
    let aud = &claims["aud"];
    assert!(
        aud == "svc" || aud.as_array().is_some_and(|a| a.iter().any(|x| x == "svc")),
        "{aud}"
    );
    let exp = claims["exp"].as_f64().map(|e| e as i64);
    assert!(
        exp.is_some_and(|e| e.saturating_add(LEEWAY as i64) >= NOW as i64),
        "{:?}",
        claims["exp"]
    );
});
