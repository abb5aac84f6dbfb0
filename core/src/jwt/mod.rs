//! JWT-SVIDs: minting (ES256 or RS256) and strict validation by the JWT-SVID standard.
//!
//! Hand-written JWS compact handling over ring rather than a general JWT
//! crate: SPIFFE needs things general crates don't do (refuse unknown header
//! fields, require `kid`, a fixed algorithm allow-list, `aud` as string or
//! list), and we want every refusal to carry its precise reason.

mod audience;
mod jwk;
mod keys;
mod mint;
mod validate;

pub use audience::{
    check_audience, AudienceError, MAX_AUDIENCES, MAX_AUDIENCE_BYTES, MAX_TOKEN_BYTES,
};
pub use jwk::{Jwk, JwkSet};
pub use keys::{generate_pkcs8, Alg, HeldKey, JwtKeyType, JwtPublicKey, JwtSigner};
pub use mint::{mint_jwt_svid, sign_compact, MintParams};
pub use validate::{
    parse_unverified, validate_jwt_svid, JwtBundles, ValidatedJwt, ValidationOptions,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is not a JWS compact serialization: expected 3 dot-separated parts, found {0}")]
    PartCount(usize),
    #[error("token {0} is not valid base64url")]
    Base64(&'static str),
    #[error("token {0} is not a JSON object")]
    Json(&'static str),
    #[error("unsupported or disallowed algorithm {0:?}")]
    Alg(String),
    #[error("token header has no kid")]
    MissingKid,
    #[error("token header has unsupported field {0:?}")]
    UnknownHeader(String),
    #[error("token header typ must be JWT or JOSE, found {0:?}")]
    Typ(String),
    #[error("token has no sub claim")]
    MissingSub,
    #[error("sub claim is not a valid SPIFFE ID: {0}")]
    BadSub(String),
    #[error("no bundle for trust domain {0:?}")]
    NoBundle(String),
    #[error("key id {0:?} not found in the bundle of trust domain {1:?}")]
    UnknownKid(String, String),
    #[error("key {0:?} does not fit algorithm {1}")]
    KeyAlgMismatch(String, String),
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has no exp claim")]
    MissingExp,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf in the future)")]
    NotYetValid,
    #[error("token was issued in the future (iat)")]
    IssuedInFuture,
    #[error("claim {0} has the wrong type")]
    ClaimType(&'static str),
    #[error("token has no aud claim")]
    MissingAud,
    #[error("audience {0:?} is not among the token's audiences {1:?}")]
    AudienceMismatch(String, Vec<String>),
    #[error("JWK is invalid: {0}")]
    BadJwk(String),
    #[error("signing failed: {0}")]
    Sign(String),
}
