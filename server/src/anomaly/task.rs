//! The one owner of every detector's state: observations in, findings out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use signet_core::{Clock, SpiffeId};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::failures::AttestationFailures;
use super::novelty::{Seen, Sightings};
use super::rate::IssuanceRate;
use super::{act, Finding, Kind, Observation};
use crate::audit::Auditor;
use crate::config::AnomalySettings;
use crate::datastore::DataStore;
use crate::ratelimit::RateLimiters;
use crate::telemetry::Metrics;

/// What acting on a finding needs.
#[derive(Clone)]
pub struct Context {
    pub metrics: Arc<Metrics>,
    pub audit: Auditor,
    pub limits: Arc<RateLimiters>,
    pub clock: Arc<dyn Clock>,
}

/// One clock-skew finding per agent at most this often (it reports at
/// every Sync stream it opens).
const SKEW_REPEAT: Duration = Duration::from_secs(3600);

/// Observations taken from the queue at once.
const BATCH: usize = 512;

struct Detectors {
    rate: IssuanceRate,
    failures: AttestationFailures,
    sightings: Sightings,
    skew_found: HashMap<SpiffeId, Instant>,
}

pub async fn run(
    mut rx: mpsc::Receiver<Observation>,
    ds: Arc<dyn DataStore>,
    settings: AnomalySettings,
    ctx: Context,
) {
    let mut d = Detectors {
        rate: IssuanceRate::new(settings.issuance),
        failures: AttestationFailures::new(settings.failures),
        sightings: Sightings::default(),
        skew_found: HashMap::new(),
    };
    let mut tidy = tokio::time::interval(settings.issuance.window.max(Duration::from_secs(1)));
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                let findings = d.observe(ds.as_ref(), &settings, &ctx, batch.drain(..)).await;
                for f in findings {
                    act::act(&ctx, ds.as_ref(), &settings, f).await;
                }
            }
            _ = tidy.tick() => {
                let now = Instant::now();
                d.rate.forget_idle(now);
                d.skew_found.retain(|_, at| now.saturating_duration_since(*at) < SKEW_REPEAT);
            }
        }
    }
}

impl Detectors {
    async fn observe(
        &mut self,
        ds: &dyn DataStore,
        settings: &AnomalySettings,
        ctx: &Context,
        observations: impl Iterator<Item = Observation>,
    ) -> Vec<Finding> {
        let now = Instant::now();
        let mut findings = Vec::new();
        let mut sightings = Vec::new();
        for o in observations {
            match o {
                Observation::X509Issued { agent, spiffe_ids } => {
                    let n = u64::try_from(spiffe_ids.len()).unwrap_or(u64::MAX);
                    if let Some(detail) = self.rate.issued(&agent, n, now) {
                        findings.push(Finding {
                            kind: Kind::IssuanceRate,
                            subject: agent.to_string(),
                            agent: Some(agent.clone()),
                            detail,
                        });
                    }
                    sightings.extend(spiffe_ids.into_iter().map(|id| Seen {
                        kind: Kind::NewAgent,
                        subject: id.to_string(),
                        value: agent.to_string(),
                        agent: Some(agent.clone()),
                    }));
                }
                Observation::JwtMinted {
                    agent,
                    spiffe_id,
                    audience,
                } => {
                    if let Some(detail) = self.rate.issued(&agent, 1, now) {
                        findings.push(Finding {
                            kind: Kind::IssuanceRate,
                            subject: agent.to_string(),
                            agent: Some(agent.clone()),
                            detail,
                        });
                    }
                    sightings.extend(audience.into_iter().map(|aud| Seen {
                        kind: Kind::NewAudience,
                        subject: spiffe_id.to_string(),
                        value: aud,
                        agent: Some(agent.clone()),
                    }));
                }
                Observation::AttestationRefused { source, token } => {
                    let subjects = std::iter::once(format!("address {source}"))
                        .chain(token.map(|t| format!("token {t}")));
                    for subject in subjects {
                        if let Some(detail) = self.failures.refused(&subject, now) {
                            findings.push(Finding {
                                kind: Kind::AttestationFailures,
                                subject,
                                agent: None,
                                detail,
                            });
                        }
                    }
                }
                Observation::Attested {
                    agent,
                    method,
                    source,
                } => {
                    // A join-token agent attests once; only methods that
                    // attest again and again have an address history.
                    if method != "join_token" && !source.is_empty() {
                        sightings.push(Seen {
                            kind: Kind::NewSourceAddress,
                            subject: agent.to_string(),
                            value: source,
                            agent: Some(agent),
                        });
                    }
                }
                Observation::ClockReport { agent, skew_ms } => {
                    let skew = Duration::from_millis(skew_ms.unsigned_abs());
                    if skew > settings.max_clock_skew && !self.skew_found.contains_key(&agent) {
                        self.skew_found.insert(agent.clone(), now);
                        findings.push(Finding {
                            kind: Kind::ClockSkew,
                            subject: agent.to_string(),
                            detail: format!(
                                "the agent's clock is {:.1}s {} the server's (max {}s)",
                                skew.as_secs_f64(),
                                if skew_ms > 0 { "ahead of" } else { "behind" },
                                settings.max_clock_skew.as_secs()
                            ),
                            agent: Some(agent),
                        });
                    }
                }
            }
        }
        if !sightings.is_empty() {
            let now_s = signet_core::clock::unix_seconds(ctx.clock.now());
            match self
                .sightings
                .check(ds, sightings, now_s, settings.learning_period)
                .await
            {
                Ok(found) => findings.extend(found),
                Err(e) => {
                    tracing::warn!(error = %e, "anomaly detection could not read or record sightings")
                }
            }
        }
        findings
    }
}
