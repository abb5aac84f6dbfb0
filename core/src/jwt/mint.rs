//! Minting JWT-SVIDs: header `alg` (ES256 or RS256, the key's), `kid`,
//! `typ: JWT`; claims `sub`, `aud` (always a list), `exp`, `iat`, `jti`,
//! and `iss` when an OIDC issuer is configured.

use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::keys::JwtSigner;
use super::JwtError;
use crate::clock::unix_seconds;
use crate::SpiffeId;

pub struct MintParams<'a> {
    pub subject: &'a SpiffeId,
    pub audience: &'a [String],
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
    /// Unique per token, so a token can be revoked alone.
    pub jti: String,
    /// The `iss` claim: the OIDC issuer URL when one is configured.
    pub issuer: Option<&'a str>,
}

pub fn mint_jwt_svid(signer: &JwtSigner, p: &MintParams<'_>) -> Result<String, JwtError> {
    if p.audience.is_empty() || p.audience.iter().any(String::is_empty) {
        return Err(JwtError::MissingAud);
    }
    let header = json!({"alg": signer.alg().as_str(), "kid": signer.kid(), "typ": "JWT"});
    let mut claims = json!({
        "sub": p.subject.to_string(),
        "aud": p.audience,
        "exp": unix_seconds(p.expires_at),
        "iat": unix_seconds(p.issued_at),
        "jti": p.jti,
    });
    if let (Some(iss), Some(map)) = (p.issuer, claims.as_object_mut()) {
        map.insert("iss".into(), iss.into());
    }
    sign_compact(signer, &header, &claims)
}

/// Signs arbitrary header and claims into a JWS compact token. Minting goes
/// through [`mint_jwt_svid`]; this is for tests and tools that need tokens
/// the minter would never make (expired, odd headers).
pub fn sign_compact(
    signer: &JwtSigner,
    header: &Value,
    claims: &Value,
) -> Result<String, JwtError> {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = signer.sign(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}
