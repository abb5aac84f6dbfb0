//! The SVIDs as both sides hold them: the server returns these from its
//! signer, the agent keeps them in its cache and serves them.

use std::time::SystemTime;

use crate::SpiffeId;

/// An X.509-SVID: the chain and what was read from its leaf when it was
/// signed or received.
#[derive(Clone, PartialEq, Eq)]
pub struct X509Svid {
    pub spiffe_id: SpiffeId,
    /// DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    pub not_after: SystemTime,
    /// The leaf's serial, lowercase hex without separators.
    pub serial_hex: String,
    /// The X.509 authority that signed it: lowercase hex SHA-256 of its
    /// certificate DER ([`crate::x509::authority_id`]); empty if unknown.
    /// Shared: every SVID of one authority holds the same text.
    pub authority_id: std::sync::Arc<str>,
}

impl X509Svid {
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        now < self.not_after
    }

    /// The leaf certificate's DER.
    pub fn leaf(&self) -> Option<&[u8]> {
        self.chain.first().map(Vec::as_slice)
    }
}

impl std::fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Svid")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("chain_len", &self.chain.len())
            .field("not_after", &self.not_after)
            .field("serial_hex", &self.serial_hex)
            .field("authority_id", &self.authority_id)
            .finish()
    }
}

/// A JWT-SVID: the compact JWS and its validity.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSvid {
    /// A bearer credential: never logged.
    pub token: String,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
}

impl JwtSvid {
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        now < self.expires_at
    }

    /// Fresh until half its lifetime has passed (then a cache mints anew).
    pub fn is_fresh_at(&self, now: SystemTime) -> bool {
        let life = self
            .expires_at
            .duration_since(self.issued_at)
            .unwrap_or_default();
        self.issued_at
            .checked_add(life / 2)
            .is_some_and(|half| now < half)
    }
}

impl std::fmt::Debug for JwtSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSvid")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_jwt_is_fresh_for_half_its_life_and_valid_for_all_of_it() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let jwt = JwtSvid {
            token: "secret.token.value".into(),
            issued_at: t0,
            expires_at: t0 + Duration::from_secs(300),
        };
        assert!(jwt.is_fresh_at(t0 + Duration::from_secs(149)));
        assert!(!jwt.is_fresh_at(t0 + Duration::from_secs(150)));
        assert!(jwt.is_valid_at(t0 + Duration::from_secs(299)));
        assert!(!jwt.is_valid_at(t0 + Duration::from_secs(300)));
        assert!(!format!("{jwt:?}").contains("secret"));
    }
}
