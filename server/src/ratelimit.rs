//! The server's rate limits (`[rate_limit]`): node attestations per source
//! address, CSRs signed and JWT-SVIDs minted per agent. A caller over its
//! limit gets `RESOURCE_EXHAUSTED` with a retry hint; each refusal is
//! counted, and each caller's first refusal of a minute is audited (a
//! flood of refusals must not become a flood of audit writes).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use signet_core::SpiffeId;
use signet_runtime::ratelimit::{retry_millis, status, Exhausted, KeyedLimiter, Rate};
use signet_runtime::throttle::LogThrottle;
use tonic::Status;

use crate::audit::{Auditor, Decision};
use crate::config::RateLimits;
use crate::telemetry::Metrics;

/// Each (limit, caller) is audited at most this often.
const AUDIT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Attestation,
    X509Signing,
    JwtMinting,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::Attestation => "attestation",
            Limit::X509Signing => "x509_signing",
            Limit::JwtMinting => "jwt_minting",
        }
    }
}

pub struct RateLimiters {
    attestation: KeyedLimiter<IpAddr>,
    x509_signing: KeyedLimiter<SpiffeId>,
    jwt_minting: KeyedLimiter<SpiffeId>,
    /// One token a minute per (limit, caller): when a refusal is audited.
    audited: KeyedLimiter<(Limit, String)>,
    log: LogThrottle,
    metrics: Arc<Metrics>,
    audit: Auditor,
}

impl RateLimiters {
    pub fn new(limits: RateLimits, metrics: Arc<Metrics>, audit: Auditor) -> Self {
        Self {
            attestation: KeyedLimiter::new(limits.attestation),
            x509_signing: KeyedLimiter::new(limits.x509_signing),
            jwt_minting: KeyedLimiter::new(limits.jwt_minting),
            audited: KeyedLimiter::new(Rate {
                per_second: 1.0 / AUDIT_EVERY.as_secs_f64(),
                burst: 1,
            }),
            log: LogThrottle::new(signet_runtime::throttle::DEFAULT_INTERVAL),
            metrics,
            audit,
        }
    }

    /// A node attestation from `source` (none known: not limited).
    pub fn attestation(&self, source: Option<IpAddr>) -> Result<(), Status> {
        let Some(ip) = source else { return Ok(()) };
        self.attestation
            .try_take(&ip, 1)
            .map_err(|e| self.refused(Limit::Attestation, self.attestation.rate(), &ip, e))
    }

    /// `csrs` CSRs to sign for `agent`.
    pub fn x509_signing(&self, agent: &SpiffeId, csrs: usize) -> Result<(), Status> {
        let n = u32::try_from(csrs).unwrap_or(u32::MAX);
        self.x509_signing
            .try_take(agent, n)
            .map_err(|e| self.refused(Limit::X509Signing, self.x509_signing.rate(), agent, e))
    }

    /// One JWT-SVID to mint for `agent`.
    pub fn jwt_minting(&self, agent: &SpiffeId) -> Result<(), Status> {
        self.jwt_minting
            .try_take(agent, 1)
            .map_err(|e| self.refused(Limit::JwtMinting, self.jwt_minting.rate(), agent, e))
    }

    /// Cuts `agent`'s signing and minting to a tenth until `until` (an
    /// anomaly's `throttle` action).
    pub fn throttle_agent(&self, agent: &SpiffeId, until: tokio::time::Instant) {
        self.x509_signing.throttle(agent, until);
        self.jwt_minting.throttle(agent, until);
    }

    fn refused(
        &self,
        limit: Limit,
        rate: Rate,
        subject: &dyn std::fmt::Display,
        e: Exhausted,
    ) -> Status {
        let subject = subject.to_string();
        self.metrics.rate_limited(limit.name());
        if let Some(left_out) = self.log.permit() {
            tracing::warn!(
                limit = limit.name(),
                %subject,
                retry_after_ms = retry_millis(e.retry_after),
                similar_left_out = left_out,
                "rate limit reached"
            );
        }
        let what = match limit {
            Limit::Attestation => format!("node attestation from {subject}"),
            Limit::X509Signing => format!("X.509-SVID signing for {subject}"),
            Limit::JwtMinting => format!("JWT-SVID minting for {subject}"),
        };
        if self.audited.try_take(&(limit, subject.clone()), 1).is_ok() {
            let decision = Decision::RateLimited {
                limit: limit.name().to_owned(),
                subject,
                retry_after_ms: retry_millis(e.retry_after),
            };
            let auditor = self.audit.clone();
            tokio::spawn(async move { auditor.append(decision).await });
        }
        status::exhausted(&what, rate, e.retry_after)
    }
}
