//! `[anomaly]`: the detectors' thresholds and what each finding does.

use std::time::Duration;

use serde::Deserialize;
use signet_core::duration::ConfigDuration;

use super::ConfigError;
use crate::anomaly::{failures, rate, Kind};

/// What a finding of a kind does beyond its record, metric and warning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyAction {
    #[default]
    Log,
    /// Cut the agent's signing and minting to a tenth for `throttle_for`.
    Throttle,
    /// Ban the agent.
    Ban,
}

/// `[anomaly.actions]`: one per kind, `log` unless set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyActions {
    #[serde(default)]
    pub issuance_rate: AnomalyAction,
    #[serde(default)]
    pub attestation_failures: AnomalyAction,
    #[serde(default)]
    pub new_source_address: AnomalyAction,
    #[serde(default)]
    pub new_audience: AnomalyAction,
    #[serde(default)]
    pub new_agent: AnomalyAction,
    #[serde(default)]
    pub clock_skew: AnomalyAction,
}

impl AnomalyActions {
    pub fn of(&self, kind: Kind) -> AnomalyAction {
        match kind {
            Kind::IssuanceRate => self.issuance_rate,
            Kind::AttestationFailures => self.attestation_failures,
            Kind::NewSourceAddress => self.new_source_address,
            Kind::NewAudience => self.new_audience,
            Kind::NewAgent => self.new_agent,
            Kind::ClockSkew => self.clock_skew,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// A subject's new values are learned, not found, this long after its
    /// first sighting (1h).
    pub learning_period: Option<ConfigDuration>,
    /// The issuance window (1m) ...
    pub issuance_window: Option<ConfigDuration>,
    /// ... the windows of history before an agent is judged (10) ...
    pub issuance_baseline_windows: Option<u32>,
    /// ... how far above its baseline a window must be (10x) ...
    pub issuance_factor: Option<f64>,
    /// ... and at least this many SVIDs (1000).
    pub issuance_min: Option<u64>,
    /// Refused attestations from one address or for one token (10) ...
    pub attestation_failures: Option<u32>,
    /// ... within this window (1m).
    pub attestation_failure_window: Option<ConfigDuration>,
    /// An agent's clock off by more than this (30s, the SVIDs' backdate).
    pub max_clock_skew: Option<ConfigDuration>,
    /// How long the `throttle` action lasts (1h).
    pub throttle_for: Option<ConfigDuration>,
    pub actions: Option<AnomalyActions>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnomalySettings {
    pub learning_period: Duration,
    pub issuance: rate::Rule,
    pub failures: failures::Rule,
    pub max_clock_skew: Duration,
    pub throttle_for: Duration,
    pub actions: AnomalyActions,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            learning_period: Duration::from_secs(3600),
            issuance: rate::Rule {
                window: Duration::from_secs(60),
                baseline_windows: 10,
                factor: 10.0,
                min: 1000,
            },
            failures: failures::Rule {
                threshold: 10,
                window: Duration::from_secs(60),
            },
            max_clock_skew: Duration::from_secs(30),
            throttle_for: Duration::from_secs(3600),
            actions: AnomalyActions::default(),
        }
    }
}

impl AnomalyConfig {
    pub fn decide(self) -> Result<AnomalySettings, ConfigError> {
        let d = AnomalySettings::default();
        let positive = |v: Option<ConfigDuration>, default: Duration, name: &'static str| match v
            .map(|c| c.0)
        {
            Some(z) if z.is_zero() => Err(ConfigError::ZeroDuration(name)),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let factor = self.issuance_factor.unwrap_or(d.issuance.factor);
        if !factor.is_finite() || factor < 1.0 {
            return Err(ConfigError::Anomaly(
                "issuance_factor",
                format!("must be a number at least 1, got {factor}"),
            ));
        }
        let threshold = self.attestation_failures.unwrap_or(d.failures.threshold);
        if threshold == 0 {
            return Err(ConfigError::ZeroCount("anomaly.attestation_failures"));
        }
        Ok(AnomalySettings {
            // Zero is allowed: every new value after the first is a finding.
            learning_period: self.learning_period.map_or(d.learning_period, |c| c.0),
            issuance: rate::Rule {
                window: positive(
                    self.issuance_window,
                    d.issuance.window,
                    "anomaly.issuance_window",
                )?,
                baseline_windows: self
                    .issuance_baseline_windows
                    .unwrap_or(d.issuance.baseline_windows)
                    .max(1),
                factor,
                min: self.issuance_min.unwrap_or(d.issuance.min),
            },
            failures: failures::Rule {
                threshold,
                window: positive(
                    self.attestation_failure_window,
                    d.failures.window,
                    "anomaly.attestation_failure_window",
                )?,
            },
            max_clock_skew: positive(
                self.max_clock_skew,
                d.max_clock_skew,
                "anomaly.max_clock_skew",
            )?,
            throttle_for: positive(self.throttle_for, d.throttle_for, "anomaly.throttle_for")?,
            actions: self.actions.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, RuntimeConfig};

    fn settings(text: &str) -> Result<AnomalySettings, String> {
        RuntimeConfig::try_from(FileConfig::parse(text).map_err(|e| e.to_string())?)
            .map(|c| c.anomaly)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_overrides_and_refusals() {
        assert_eq!(settings("").unwrap(), AnomalySettings::default());
        let s = settings(
            "[anomaly]\nlearning_period = \"0s\"\nissuance_window = \"1s\"\n[anomaly.actions]\nnew_agent = \"ban\"\nclock_skew = \"throttle\"\n",
        )
        .unwrap();
        assert_eq!(s.learning_period, Duration::ZERO);
        assert_eq!(s.issuance.window, Duration::from_secs(1));
        assert_eq!(s.actions.of(Kind::NewAgent), AnomalyAction::Ban);
        assert_eq!(s.actions.of(Kind::ClockSkew), AnomalyAction::Throttle);
        assert_eq!(s.actions.of(Kind::NewAudience), AnomalyAction::Log);
        assert!(settings("[anomaly.actions]\nnew_agent = \"shoot\"").is_err());
        assert!(settings("[anomaly.actions]\nnew_thing = \"log\"").is_err());
        assert_eq!(
            settings("[anomaly]\nissuance_factor = 0.5").unwrap_err(),
            "anomaly.issuance_factor: must be a number at least 1, got 0.5"
        );
    }
}
