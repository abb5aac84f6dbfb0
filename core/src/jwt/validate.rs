//! Validating a JWT-SVID against the JWT bundles we hold: structure, header,
//! key, signature, times and audience, each refusal with its reason.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::keys::{Alg, JwtPublicKey};
use super::JwtError;
use crate::clock::unix_seconds;
use crate::{SpiffeId, TrustDomain};

/// Trust domain → key id → key.
pub type JwtBundles = HashMap<TrustDomain, HashMap<String, JwtPublicKey>>;

#[derive(Debug, Clone, Copy)]
pub struct ValidationOptions {
    pub now: SystemTime,
    /// Tolerated clock skew for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedJwt {
    pub spiffe_id: SpiffeId,
    /// Every claim, with `aud` normalised to a list.
    pub claims: Map<String, Value>,
    pub kid: String,
}

const HEADER_FIELDS: &[&str] = &["alg", "kid", "typ"];

/// Decodes a token's header and claims without checking its signature.
pub fn parse_unverified(token: &str) -> Result<(JsonObject, JsonObject), JwtError> {
    let (h, c, _, _) = split(token)?;
    Ok((h, c))
}

/// Header, claims, signing input, signature.
type Parts<'a> = (JsonObject, JsonObject, &'a str, Vec<u8>);
type JsonObject = Map<String, Value>;

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err(JwtError::PartCount(parts.len()));
    };
    let header = decode_object(h, "header")?;
    let claims = decode_object(c, "payload")?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Base64("signature"))?;
    let signing_input = token
        .rsplit_once('.')
        .map(|(input, _)| input)
        .unwrap_or_default();
    Ok((header, claims, signing_input, sig))
}

fn decode_object(part: &str, what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Base64(what))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Json(what)),
    }
}

pub fn validate_jwt_svid(
    token: &str,
    audience: &str,
    bundles: &JwtBundles,
    opts: ValidationOptions,
) -> Result<ValidatedJwt, JwtError> {
    let (header, mut claims, signing_input, sig) = split(token)?;

    if let Some(unknown) = header.keys().find(|k| !HEADER_FIELDS.contains(&k.as_str())) {
        return Err(JwtError::UnknownHeader(unknown.clone()));
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => Alg::parse(a)?,
        other => {
            return Err(JwtError::Alg(
                other.map(Value::to_string).unwrap_or_default(),
            ))
        }
    };
    let kid = match header.get("kid") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => return Err(JwtError::MissingKid),
    };
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if t == "JWT" || t == "JOSE" => {}
        Some(other) => return Err(JwtError::Typ(other.to_string())),
    }

    let sub = match claims.get("sub") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(JwtError::ClaimType("sub")),
        None => return Err(JwtError::MissingSub),
    };
    let spiffe_id = SpiffeId::parse_with_path(sub).map_err(|e| JwtError::BadSub(e.to_string()))?;
    let td = spiffe_id.trust_domain();
    let keys = bundles
        .get(td)
        .ok_or_else(|| JwtError::NoBundle(td.to_string()))?;
    let key = keys
        .get(&kid)
        .ok_or_else(|| JwtError::UnknownKid(kid.clone(), td.to_string()))?;
    key.verify(alg, signing_input.as_bytes(), &sig)?;

    let now = unix_seconds(opts.now);
    let leeway = i64::try_from(opts.leeway.as_secs()).unwrap_or(i64::MAX);
    let exp = numeric_date(&claims, "exp")?.ok_or(JwtError::MissingExp)?;
    if now > exp.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")? {
        if now.saturating_add(leeway) < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(iat) = numeric_date(&claims, "iat")? {
        if now.saturating_add(leeway) < iat {
            return Err(JwtError::IssuedInFuture);
        }
    }

    let auds: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or(JwtError::ClaimType("aud"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(JwtError::ClaimType("aud")),
        None => return Err(JwtError::MissingAud),
    };
    if !auds.iter().any(|a| a == audience) {
        return Err(JwtError::AudienceMismatch(audience.to_owned(), auds));
    }
    claims.insert(
        "aud".into(),
        Value::Array(auds.into_iter().map(Value::String).collect()),
    );
    Ok(ValidatedJwt {
        spiffe_id,
        claims,
        kid,
    })
}

/// A NumericDate claim as whole seconds; absent is `None`, wrong type an error.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(JwtError::ClaimType(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{mint_jwt_svid, JwtSigner, MintParams};

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn setup() -> (JwtSigner, JwtBundles) {
        let (signer, _) = JwtSigner::generate("k1".into()).unwrap();
        let mut keys = HashMap::new();
        keys.insert("k1".to_string(), signer.public_key());
        let mut bundles = HashMap::new();
        bundles.insert(TrustDomain::new("example.org").unwrap(), keys);
        (signer, bundles)
    }

    fn token(signer: &JwtSigner, aud: &[&str]) -> String {
        let sub = SpiffeId::parse("spiffe://example.org/web").unwrap();
        let aud: Vec<String> = aud.iter().map(|s| s.to_string()).collect();
        mint_jwt_svid(
            signer,
            &MintParams {
                subject: &sub,
                audience: &aud,
                issued_at: t(1000),
                expires_at: t(1300),
                jti: "j1".into(),
                issuer: None,
            },
        )
        .unwrap()
    }

    fn opts(now: u64) -> ValidationOptions {
        ValidationOptions {
            now: t(now),
            leeway: Duration::from_secs(30),
        }
    }

    fn forge(header: &str, claims: &str, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    #[test]
    fn minted_token_validates_with_claims_and_list_audience() {
        let (signer, bundles) = setup();
        let tok = token(&signer, &["svc-a", "svc-b"]);
        let v = validate_jwt_svid(&tok, "svc-b", &bundles, opts(1100)).unwrap();
        assert_eq!(v.spiffe_id.to_string(), "spiffe://example.org/web");
        assert_eq!(v.claims["aud"], serde_json::json!(["svc-a", "svc-b"]));
        assert_eq!(v.claims["jti"], "j1");
        assert_eq!(v.claims["exp"], 1300);
        assert_eq!(v.kid, "k1");
        let (h, _) = parse_unverified(&tok).unwrap();
        assert_eq!(h["typ"], "JWT");
        assert_eq!(h["alg"], "ES256");
    }

    #[test]
    fn each_bad_token_is_refused_with_its_reason() {
        let (signer, bundles) = setup();
        let good = token(&signer, &["a"]);
        let claims = r#"{"sub":"spiffe://example.org/web","aud":["a"],"exp":1300}"#;
        // Tamper with the first signature character: the last one's low bits
        // are base64 padding, so changing it may only break the encoding.
        let (input, sig) = good.rsplit_once('.').unwrap();
        let first = if sig.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{input}.{first}{}", &sig[1..]);
        let pubkey = match signer.public_key() {
            JwtPublicKey::P256(p) => p,
            _ => unreachable!(),
        };
        let cases: Vec<(String, JwtError)> = vec![
            (
                forge(r#"{"alg":"none","kid":"k1"}"#, claims, b""),
                JwtError::Alg("none".into()),
            ),
            (
                forge(r#"{"alg":"HS256","kid":"k1"}"#, claims, &pubkey),
                JwtError::Alg("HS256".into()),
            ),
            (
                forge(r#"{"alg":"ES256"}"#, claims, b"x"),
                JwtError::MissingKid,
            ),
            (
                forge(
                    r#"{"alg":"ES256","kid":"k1","jku":"http://x"}"#,
                    claims,
                    b"x",
                ),
                JwtError::UnknownHeader("jku".into()),
            ),
            (
                forge(r#"{"alg":"ES256","kid":"k2"}"#, claims, b"x"),
                JwtError::UnknownKid("k2".into(), "example.org".into()),
            ),
            (tampered, JwtError::BadSignature),
            ("a.b".into(), JwtError::PartCount(2)),
            ("a.b.c.d".into(), JwtError::PartCount(4)),
            ("!!.e30.e30".into(), JwtError::Base64("header")),
            (
                format!("{}.e30.", URL_SAFE_NO_PAD.encode("not json")),
                JwtError::Json("header"),
            ),
            (
                forge(
                    r#"{"alg":"ES256","kid":"k1"}"#,
                    r#"{"sub":"spiffe://other.org/x","exp":1300,"aud":"a"}"#,
                    b"x",
                ),
                JwtError::NoBundle("other.org".into()),
            ),
        ];
        for (tok, want) in cases {
            assert_eq!(
                validate_jwt_svid(&tok, "a", &bundles, opts(1100)),
                Err(want)
            );
        }
    }

    #[test]
    fn claims_checked_after_a_good_signature_are_refused_with_their_reason() {
        use crate::jwt::sign_compact;
        let (signer, bundles) = setup();
        let header = serde_json::json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
        let signed =
            |header: &Value, claims: Value| sign_compact(&signer, header, &claims).unwrap();
        let check = |tok: String| validate_jwt_svid(&tok, "a", &bundles, opts(1100));
        let sub = "spiffe://example.org/web";
        // The baseline passes: every case below changes one thing.
        assert!(check(signed(
            &header,
            serde_json::json!({"sub": sub, "aud": "a", "exp": 1300})
        ))
        .is_ok());
        let cases: Vec<(Value, Value, JwtError)> = vec![
            (
                header.clone(),
                serde_json::json!({"sub": sub, "aud": "a"}),
                JwtError::MissingExp,
            ),
            (
                header.clone(),
                serde_json::json!({"sub": sub, "exp": 1300}),
                JwtError::MissingAud,
            ),
            (
                header.clone(),
                serde_json::json!({"aud": "a", "exp": 1300}),
                JwtError::MissingSub,
            ),
            (
                header.clone(),
                serde_json::json!({"sub": "web", "aud": "a", "exp": 1300}),
                JwtError::BadSub("scheme must be spiffe://".into()),
            ),
            (
                serde_json::json!({"alg": "ES256", "kid": "k1", "typ": "JWS"}),
                serde_json::json!({"sub": sub, "aud": "a", "exp": 1300}),
                JwtError::Typ("\"JWS\"".into()),
            ),
            (
                header.clone(),
                serde_json::json!({"sub": 7, "aud": "a", "exp": 1300}),
                JwtError::ClaimType("sub"),
            ),
            (
                header.clone(),
                serde_json::json!({"sub": sub, "aud": 7, "exp": 1300}),
                JwtError::ClaimType("aud"),
            ),
            (
                header.clone(),
                serde_json::json!({"sub": sub, "aud": ["a", 7], "exp": 1300}),
                JwtError::ClaimType("aud"),
            ),
            (
                header.clone(),
                serde_json::json!({"sub": sub, "aud": "a", "exp": "1300"}),
                JwtError::ClaimType("exp"),
            ),
            (
                header.clone(),
                serde_json::json!({"sub": sub, "aud": "a", "exp": 1300, "nbf": "x"}),
                JwtError::ClaimType("nbf"),
            ),
            (
                header.clone(),
                serde_json::json!({"sub": sub, "aud": "a", "exp": 1300, "nbf": 1200}),
                JwtError::NotYetValid,
            ),
            (
                serde_json::json!({"alg": "RS256", "kid": "k1"}),
                serde_json::json!({"sub": sub, "aud": "a", "exp": 1300}),
                JwtError::KeyAlgMismatch("EC P-256".into(), "RS256".into()),
            ),
        ];
        for (h, c, want) in cases {
            let got = check(signed(&h, c.clone()));
            match (&got, &want) {
                // The parser's wording is its own; the variant is the point.
                (Err(JwtError::BadSub(_)), JwtError::BadSub(_)) => {}
                _ => assert_eq!(got, Err(want), "{h} {c}"),
            }
        }
    }

    #[test]
    fn time_and_audience_rules() {
        let (signer, bundles) = setup();
        let tok = token(&signer, &["a"]);
        assert_eq!(
            validate_jwt_svid(&tok, "a", &bundles, opts(1331)),
            Err(JwtError::Expired)
        );
        assert!(
            validate_jwt_svid(&tok, "a", &bundles, opts(1329)).is_ok(),
            "within leeway"
        );
        assert_eq!(
            validate_jwt_svid(&tok, "a", &bundles, opts(900)),
            Err(JwtError::IssuedInFuture)
        );
        assert_eq!(
            validate_jwt_svid(&tok, "b", &bundles, opts(1100)),
            Err(JwtError::AudienceMismatch("b".into(), vec!["a".into()]))
        );
    }

    #[test]
    fn mint_refuses_empty_audience() {
        let (signer, _) = setup();
        let sub = SpiffeId::parse("spiffe://example.org/web").unwrap();
        let p = MintParams {
            subject: &sub,
            audience: &[],
            issued_at: t(0),
            expires_at: t(1),
            jti: "j".into(),
            issuer: None,
        };
        assert_eq!(mint_jwt_svid(&signer, &p), Err(JwtError::MissingAud));
    }

    #[test]
    fn jwk_round_trips_the_public_key() {
        let (signer, _) = setup();
        let jwk = signer.jwk();
        assert_eq!(jwk.kid.as_deref(), Some("k1"));
        assert_eq!(jwk.use_.as_deref(), Some("jwt-svid"));
        assert_eq!(JwtPublicKey::from_jwk(&jwk).unwrap(), signer.public_key());
    }
}
