//! The two documents (OpenID Connect Discovery 1.0, RFC 7517), from the
//! trust domain's bundle.

use serde_json::{json, Value};
use signet_core::bundle::Bundle;
use signet_core::jwt::{Jwk, JwtPublicKey};

use crate::config::OidcSettings;

/// The algorithm each key signs JWT-SVIDs with.
fn alg(key: &JwtPublicKey) -> &'static str {
    match key {
        JwtPublicKey::P256(_) => "ES256",
        JwtPublicKey::P384(_) => "ES384",
        JwtPublicKey::Rsa { .. } => "RS256",
    }
}

/// The keys as a JWKS: `use: sig` and `alg` on each (clouds want both).
pub fn jwks(bundle: &Bundle) -> serde_json::Result<String> {
    let mut keys = bundle.jwt_keys();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    let keys = keys
        .iter()
        .map(|(kid, key)| {
            let mut jwk =
                serde_json::to_value(Jwk::from_public_key(key, "sig", Some(kid.clone())))?;
            if let Some(map) = jwk.as_object_mut() {
                map.insert("alg".into(), alg(key).into());
            }
            Ok(jwk)
        })
        .collect::<serde_json::Result<Vec<Value>>>()?;
    serde_json::to_string(&json!({ "keys": keys }))
}

/// The discovery document; its algorithms are those of the current keys.
pub fn discovery(settings: &OidcSettings, bundle: &Bundle) -> serde_json::Result<String> {
    let mut algs: Vec<&str> = bundle.jwt_keys().iter().map(|(_, k)| alg(k)).collect();
    algs.sort_unstable();
    algs.dedup();
    serde_json::to_string(&json!({
        "issuer": settings.issuer,
        "jwks_uri": settings.jwks_uri(),
        "authorization_endpoint": "",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_core::jwt::{JwtKeyType, JwtSigner};
    use signet_core::TrustDomain;

    #[test]
    fn each_key_is_a_signing_jwk_with_its_alg_and_discovery_names_them() {
        let td = TrustDomain::new("example.org").unwrap();
        let mut bundle = Bundle {
            trust_domain: td,
            x509_authorities: vec![],
            jwt_authorities: vec![],
            sequence: 1,
        };
        for (kid, ty) in [("b", JwtKeyType::Rsa2048), ("a", JwtKeyType::EcP256)] {
            let (signer, _) = JwtSigner::generate_as(kid.into(), ty).unwrap();
            bundle
                .jwt_authorities
                .push(signet_core::bundle::JwtAuthority {
                    kid: kid.into(),
                    jwk: signer.jwk(),
                    public_key: signer.public_key(),
                    expires_at: i64::MAX,
                });
        }
        let set: Value = serde_json::from_str(&jwks(&bundle).unwrap()).unwrap();
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            (
                &keys[0]["kid"],
                &keys[0]["kty"],
                &keys[0]["alg"],
                &keys[0]["use"],
                &keys[0]["crv"]
            ),
            (
                &json!("a"),
                &json!("EC"),
                &json!("ES256"),
                &json!("sig"),
                &json!("P-256")
            )
        );
        assert_eq!(
            (&keys[1]["kty"], &keys[1]["alg"], &keys[1]["e"]),
            (&json!("RSA"), &json!("RS256"), &json!("AQAB"))
        );
        let settings = crate::config::OidcConfig {
            issuer: Some("https://oidc.example.org".into()),
            ..Default::default()
        }
        .decide()
        .unwrap()
        .unwrap();
        let doc: Value = serde_json::from_str(&discovery(&settings, &bundle).unwrap()).unwrap();
        assert_eq!(doc["issuer"], "https://oidc.example.org");
        assert_eq!(doc["jwks_uri"], "https://oidc.example.org/keys");
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["ES256", "RS256"])
        );
        assert_eq!(doc["response_types_supported"], json!(["id_token"]));
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
    }
}
