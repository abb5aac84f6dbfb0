//! `[federation]`: this server's bundle endpoint, how often peers are
//! fetched, and relationships written in the file (`[[federation.federates_with]]`),
//! applied to the datastore at start like `federation create` would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{bounded, ConfigDuration, ConfigError};
use crate::federation::endpoint::{EndpointSettings, ServeProfile};
use crate::federation::{RefreshBounds, HTTPS_SPIFFE, HTTPS_WEB};

pub const DEFAULT_REFRESH_HINT: Duration = Duration::from_secs(300);
pub const MAX_REFRESH: Duration = Duration::from_secs(7 * 24 * 3600);

/// `[federation]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// A peer is never fetched more often than this (its hint may ask).
    pub min_refresh_interval: Option<ConfigDuration>,
    /// Nor less often than this.
    pub max_refresh_interval: Option<ConfigDuration>,
    pub bundle_endpoint: Option<BundleEndpointConfig>,
    #[serde(default)]
    pub federates_with: Vec<FederatesWithConfig>,
}

/// `[federation.bundle_endpoint]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BundleEndpointConfig {
    pub bind: String,
    /// `https_spiffe` (the default: the server's SVID) or `https_web`.
    pub profile: Option<String>,
    /// https_web: the certificate chain and key (PEM), reloaded on change.
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
    /// `spiffe_refresh_hint` of the document served (300s unless set).
    pub refresh_hint: Option<ConfigDuration>,
}

/// `[[federation.federates_with]]`: what `federation create` takes.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FederatesWithConfig {
    pub trust_domain: String,
    pub bundle_endpoint_url: String,
    pub profile: String,
    pub endpoint_spiffe_id: Option<String>,
    pub trust_domain_bundle_path: Option<PathBuf>,
    /// `spiffe` (default) or `pem`.
    pub trust_domain_bundle_format: Option<String>,
    pub ca_bundle_path: Option<PathBuf>,
}

/// The `[federation]` settings, decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FederationSettings {
    pub bounds: RefreshBounds,
    pub endpoint: Option<EndpointSettings>,
    /// Checked when applied (they name files), at start.
    pub relationships: Vec<FederatesWithConfig>,
}

impl FederationConfig {
    pub fn decide(self) -> Result<FederationSettings, ConfigError> {
        let d = RefreshBounds::default();
        let bounds = RefreshBounds {
            min: bounded(
                self.min_refresh_interval,
                d.min,
                "federation.min_refresh_interval",
                MAX_REFRESH,
            )?,
            max: bounded(
                self.max_refresh_interval,
                d.max,
                "federation.max_refresh_interval",
                MAX_REFRESH,
            )?,
        };
        if bounds.min > bounds.max {
            return Err(ConfigError::Federation(
                "federation.min_refresh_interval is above max_refresh_interval".into(),
            ));
        }
        let endpoint = self.bundle_endpoint.map(endpoint_settings).transpose()?;
        for rel in &self.federates_with {
            if ![HTTPS_SPIFFE, HTTPS_WEB].contains(&rel.profile.as_str()) {
                return Err(ConfigError::Federation(format!(
                    "federation.federates_with {}: profile {:?}: expected {HTTPS_SPIFFE} or {HTTPS_WEB}",
                    rel.trust_domain, rel.profile
                )));
            }
        }
        Ok(FederationSettings {
            bounds,
            endpoint,
            relationships: self.federates_with,
        })
    }
}

fn endpoint_settings(e: BundleEndpointConfig) -> Result<EndpointSettings, ConfigError> {
    let bind = e.bind.parse::<SocketAddr>().map_err(|err| {
        ConfigError::Federation(format!(
            "federation.bundle_endpoint.bind {:?}: {err}",
            e.bind
        ))
    })?;
    let profile =
        match e.profile.as_deref().unwrap_or(HTTPS_SPIFFE) {
            HTTPS_SPIFFE => ServeProfile::HttpsSpiffe,
            HTTPS_WEB => match (e.cert_path, e.key_path) {
                (Some(cert_path), Some(key_path)) => ServeProfile::HttpsWeb {
                    cert_path,
                    key_path,
                },
                _ => return Err(ConfigError::Federation(
                    "federation.bundle_endpoint: profile https_web needs cert_path and key_path"
                        .into(),
                )),
            },
            other => {
                return Err(ConfigError::Federation(format!(
            "federation.bundle_endpoint.profile {other:?}: expected {HTTPS_SPIFFE} or {HTTPS_WEB}"
        )))
            }
        };
    Ok(EndpointSettings {
        bind,
        profile,
        refresh_hint: bounded(
            e.refresh_hint,
            DEFAULT_REFRESH_HINT,
            "federation.bundle_endpoint.refresh_hint",
            MAX_REFRESH,
        )?,
    })
}
