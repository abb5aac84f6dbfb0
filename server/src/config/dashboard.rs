//! `[dashboard]`: the read-only trust dashboard, off unless `bind` is set.

use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// HTTPS address of `/ui`, e.g. "127.0.0.1:8443".
    pub bind: Option<String>,
}

impl DashboardConfig {
    pub fn bind(self) -> Result<Option<SocketAddr>, ConfigError> {
        self.bind
            .map(|text| {
                text.parse::<SocketAddr>()
                    .map_err(|e| ConfigError::DashboardBind(text.clone(), e.to_string()))
            })
            .transpose()
    }
}
