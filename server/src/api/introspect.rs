//! JWT-SVID introspection: is this token active right now, and if not, why.
//! Validated against every JWT authority in the bundle (any state), with no
//! leeway, then checked against the revoked jtis.

use std::time::{Duration, SystemTime};

use signet_core::jwt::{
    parse_unverified, validate_jwt_svid, JwtBundles, JwtError, ValidationOptions,
};
use signet_proto::admin::IntrospectJwtSvidResponse;

/// The reason a refusal is reported with.
pub fn reason(e: &JwtError) -> &'static str {
    match e {
        JwtError::Expired => "expired",
        JwtError::NotYetValid | JwtError::IssuedInFuture => "not yet valid",
        JwtError::UnknownKid(..) | JwtError::NoBundle(_) | JwtError::KeyAlgMismatch(..) => {
            "unknown key"
        }
        JwtError::BadSignature => "bad signature",
        JwtError::AudienceMismatch(..) => "audience mismatch",
        _ => "malformed",
    }
}

/// `revoked`: whether the token's jti is on the revocation list.
pub fn introspect(
    token: &str,
    audience: &str,
    bundles: &JwtBundles,
    now: SystemTime,
    revoked: bool,
) -> IntrospectJwtSvidResponse {
    let claims = parse_unverified(token).ok().map(|(_, c)| c);
    let claims_json = claims
        .as_ref()
        .and_then(|c| serde_json::to_string(c).ok())
        .unwrap_or_default();
    let spiffe_id = claims
        .as_ref()
        .and_then(|c| c.get("sub"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    // Without an audience to check, any of the token's own will do.
    let audience = if audience.is_empty() {
        claims
            .as_ref()
            .and_then(|c| c.get("aud"))
            .and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Array(a) => {
                    a.first().and_then(|x| x.as_str()).map(str::to_owned)
                }
                _ => None,
            })
            .unwrap_or_default()
    } else {
        audience.to_owned()
    };
    let opts = ValidationOptions {
        now,
        leeway: Duration::ZERO,
    };
    let refusal = match validate_jwt_svid(token, &audience, bundles, opts) {
        Err(e) => Some(reason(&e)),
        Ok(_) if revoked => Some("revoked"),
        Ok(_) => None,
    };
    IntrospectJwtSvidResponse {
        active: refusal.is_none(),
        reason: refusal.unwrap_or_default().to_owned(),
        spiffe_id,
        claims_json,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use signet_core::{ManualClock, SpiffeId, TrustDomain};

    use super::*;
    use crate::ca::CaSettings;

    #[tokio::test]
    async fn every_refusal_has_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = Arc::new(ManualClock::new(t0));
        let settings = || CaSettings {
            trust_domain: TrustDomain::new("example.org").unwrap(),
            ca_ttl: Duration::from_secs(3600),
            default_svid_ttl: Duration::from_secs(600),
            default_jwt_svid_ttl: Duration::from_secs(300),
            backdate: Duration::from_secs(30),
            schedule: Default::default(),
            jwt_key_type: Default::default(),
            jwt_issuer: None,
            server_id: "s1".into(),
            upstream: None,
        };
        let ca = crate::ca::for_tests(dir.path(), settings(), clock.clone()).await;
        let other_dir = tempfile::tempdir().unwrap();
        let other = crate::ca::for_tests(other_dir.path(), settings(), clock.clone()).await;
        let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
        let tok = ca
            .mint_jwt_svid(&id, &["a".into()], None)
            .unwrap()
            .svid
            .token;
        let b = ca.jwt_bundles();

        let ok = introspect(&tok, "", &b, t0, false);
        assert!(ok.active, "{ok:?}");
        assert_eq!(ok.spiffe_id, id.to_string());
        assert!(ok.claims_json.contains("\"sub\""));
        assert!(introspect(&tok, "a", &b, t0, false).active);
        let r = |resp: IntrospectJwtSvidResponse| {
            assert!(!resp.active);
            resp.reason
        };
        assert_eq!(r(introspect(&tok, "a", &b, t0, true)), "revoked");
        assert_eq!(r(introspect(&tok, "b", &b, t0, false)), "audience mismatch");
        assert_eq!(
            r(introspect(
                &tok,
                "a",
                &b,
                t0 + Duration::from_secs(301),
                false
            )),
            "expired"
        );
        assert_eq!(
            r(introspect(
                &tok,
                "a",
                &b,
                t0 - Duration::from_secs(10),
                false
            )),
            "not yet valid"
        );
        let foreign = other
            .mint_jwt_svid(&id, &["a".into()], None)
            .unwrap()
            .svid
            .token;
        assert_eq!(r(introspect(&foreign, "a", &b, t0, false)), "unknown key");
        // Same kid, another key's signature.
        let (h, c, _) = {
            let mut p = tok.split('.');
            (p.next().unwrap(), p.next().unwrap(), p.next().unwrap())
        };
        let sig = foreign.rsplit('.').next().unwrap();
        let forged = format!("{h}.{c}.{sig}");
        assert_eq!(r(introspect(&forged, "a", &b, t0, false)), "bad signature");
        assert_eq!(r(introspect("nope", "a", &b, t0, false)), "malformed");
    }
}
