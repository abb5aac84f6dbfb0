//! `[upstream_authority.signet]`: the upstream Signet server that signs
//! this server's X.509 CAs, and how this server reaches and proves itself
//! to it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use signet_core::SpiffeId;

use super::{bounded, ConfigDuration, ConfigError};
use crate::ca::upstream::UpstreamSignet;

/// How long one signing exchange with the upstream may take by default.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSignetConfig {
    /// The upstream's Node API, `HOST:PORT`.
    pub server_address: String,
    /// PEM roots to check the upstream server against at first contact.
    pub trust_bundle_path: PathBuf,
    /// The upstream's agent on this host, which serves this server's SVID.
    pub workload_api_socket: PathBuf,
    /// One signing exchange, end to end (default 10s).
    pub timeout: Option<ConfigDuration>,
    /// This server's downstream SPIFFE ID, when the agent serves it more
    /// than one SVID (default: the first, its default identity).
    pub spiffe_id: Option<String>,
}

impl UpstreamSignetConfig {
    pub fn decide(self) -> Result<UpstreamSignet, ConfigError> {
        if self.server_address.trim().is_empty() {
            return Err(ConfigError::Empty(
                "upstream_authority.signet.server_address",
            ));
        }
        let spiffe_id = self
            .spiffe_id
            .map(|id| {
                SpiffeId::parse_with_path(&id).map_err(|e| {
                    ConfigError::Invalid("upstream_authority.signet.spiffe_id", e.to_string())
                })
            })
            .transpose()?;
        Ok(UpstreamSignet {
            spiffe_id,
            server_address: self.server_address,
            trust_bundle_path: self.trust_bundle_path,
            workload_api_socket: self.workload_api_socket,
            timeout: bounded(
                self.timeout,
                DEFAULT_UPSTREAM_TIMEOUT,
                "upstream_authority.signet.timeout",
                MAX_UPSTREAM_TIMEOUT,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<UpstreamSignet, String> {
        let c: UpstreamSignetConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.decide().map_err(|e| e.to_string())
    }

    #[test]
    fn the_three_paths_are_enough_and_the_timeout_defaults() {
        let u = parse(
            "server_address = \"up:8081\"\ntrust_bundle_path = \"/b.pem\"\nworkload_api_socket = \"/s.sock\"\n",
        )
        .unwrap();
        assert_eq!(u.server_address, "up:8081");
        assert_eq!(u.timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(u.spiffe_id, None);
    }

    #[test]
    fn unknown_keys_and_missing_paths_are_refused() {
        let err =
            parse("server_address = \"up:8081\"\ntrust_bundle_path = \"/b.pem\"\n").unwrap_err();
        assert!(err.contains("workload_api_socket"), "{err}");
        let err = parse(
            "server_address = \"a:1\"\ntrust_bundle_path = \"/b\"\nworkload_api_socket = \"/s\"\nsocket = 1\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        let err = parse(
            "server_address = \" \"\ntrust_bundle_path = \"/b\"\nworkload_api_socket = \"/s\"\n",
        )
        .unwrap_err();
        assert!(err.contains("server_address"), "{err}");
        let err = parse(
            "server_address = \"a:1\"\ntrust_bundle_path = \"/b\"\nworkload_api_socket = \"/s\"\nspiffe_id = \"spiffe://example.org\"\n",
        )
        .unwrap_err();
        assert!(err.contains("spiffe_id"), "{err}");
    }
}
