//! `[rate_limit]`: token buckets on what a caller can make the server do.
//! Defaults follow SPIRE's (attestation per address, signing per caller),
//! sized so an agent's cold start (10,000 entries at once) and a site's
//! reboot (a hundred nodes behind one NAT address) pass untouched.

use serde::Deserialize;
use signet_runtime::ratelimit::{Rate, RateConfig};

use super::ConfigError;
use crate::api::batch_sign::MAX_BATCH;

pub const ATTESTATION: Rate = Rate {
    per_second: 10.0,
    burst: 100,
};
pub const X509_SIGNING: Rate = Rate {
    per_second: 1000.0,
    burst: 20_000,
};
pub const JWT_MINTING: Rate = Rate {
    per_second: 500.0,
    burst: 1000,
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Node attestations per source address.
    pub attestation: Option<RateConfig>,
    /// CSRs signed per agent (a batch counts each CSR).
    pub x509_signing: Option<RateConfig>,
    /// JWT-SVIDs minted per agent.
    pub jwt_minting: Option<RateConfig>,
}

/// The limits decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    pub attestation: Rate,
    pub x509_signing: Rate,
    pub jwt_minting: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            attestation: ATTESTATION,
            x509_signing: X509_SIGNING,
            jwt_minting: JWT_MINTING,
        }
    }
}

impl RateLimitConfig {
    pub fn decide(self) -> Result<RateLimits, ConfigError> {
        let rate = |v: Option<RateConfig>, default: Rate, name: &'static str| match v {
            None => Ok(default),
            Some(c) => c.rate().map_err(|e| ConfigError::RateLimit(name, e)),
        };
        let x509_signing = rate(self.x509_signing, X509_SIGNING, "x509_signing")?;
        // One batch is taken whole: a smaller bucket could never pass it.
        if !x509_signing.is_off() && (x509_signing.burst as usize) < MAX_BATCH {
            return Err(ConfigError::RateLimit(
                "x509_signing",
                format!(
                    "burst must be at least {MAX_BATCH} (the CSRs one batch may carry), got {}",
                    x509_signing.burst
                ),
            ));
        }
        Ok(RateLimits {
            attestation: rate(self.attestation, ATTESTATION, "attestation")?,
            x509_signing,
            jwt_minting: rate(self.jwt_minting, JWT_MINTING, "jwt_minting")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, RuntimeConfig};

    fn limits(text: &str) -> Result<RateLimits, String> {
        RuntimeConfig::try_from(FileConfig::parse(text).map_err(|e| e.to_string())?)
            .map(|c| c.rate_limits)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(limits("").unwrap(), RateLimits::default());
        let l = limits(
            "[rate_limit]\nattestation = { per_second = 1, burst = 5 }\njwt_minting = { per_second = 0 }\n",
        )
        .unwrap();
        assert_eq!(
            l.attestation,
            Rate {
                per_second: 1.0,
                burst: 5
            }
        );
        assert!(l.jwt_minting.is_off());
        assert_eq!(l.x509_signing, X509_SIGNING);
    }

    #[test]
    fn bad_values_name_the_setting() {
        assert_eq!(
            limits("[rate_limit]\nx509_signing = { per_second = 10, burst = 10 }").unwrap_err(),
            "rate_limit.x509_signing: burst must be at least 1024 (the CSRs one batch may carry), got 10"
        );
        assert_eq!(
            limits("[rate_limit]\nattestation = { per_second = -2 }").unwrap_err(),
            "rate_limit.attestation: per_second must be a number at least 0, got -2"
        );
        assert!(limits("[rate_limit]\nattestation = { rate = 2 }").is_err());
    }
}
