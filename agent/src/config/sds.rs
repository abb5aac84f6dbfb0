//! `[sds]`: Envoy SDS on the Workload API socket, with SPIRE's setting
//! names and defaults, so an Envoy configuration written for SPIRE works
//! unchanged.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SdsSection {
    pub default_svid_name: Option<String>,
    pub default_bundle_name: Option<String>,
    pub default_all_bundles_name: Option<String>,
    pub disable_spiffe_cert_validation: Option<bool>,
}

/// The resource names with a meaning of their own, and how validation
/// contexts are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsSettings {
    /// Names the caller's first identity (`default`).
    pub default_svid_name: String,
    /// Names the own trust domain's CAs (`ROOTCA`).
    pub default_bundle_name: String,
    /// Names one SPIFFE validator config with every bundle (`ALL`).
    pub default_all_bundles_name: String,
    /// Per-trust-domain contexts as plain `trusted_ca` even for an Envoy
    /// that supports the SPIFFE certificate validator (1.18 on).
    pub disable_spiffe_cert_validation: bool,
}

impl Default for SdsSettings {
    fn default() -> Self {
        Self {
            default_svid_name: "default".into(),
            default_bundle_name: "ROOTCA".into(),
            default_all_bundles_name: "ALL".into(),
            disable_spiffe_cert_validation: false,
        }
    }
}

impl SdsSection {
    pub fn settings(self) -> Result<SdsSettings, ConfigError> {
        let d = SdsSettings::default();
        let name = |key: &'static str, set: Option<String>, default: String| match set {
            Some(n) if n.trim().is_empty() => Err(ConfigError::Empty(key)),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let s = SdsSettings {
            default_svid_name: name(
                "sds.default_svid_name",
                self.default_svid_name,
                d.default_svid_name,
            )?,
            default_bundle_name: name(
                "sds.default_bundle_name",
                self.default_bundle_name,
                d.default_bundle_name,
            )?,
            default_all_bundles_name: name(
                "sds.default_all_bundles_name",
                self.default_all_bundles_name,
                d.default_all_bundles_name,
            )?,
            disable_spiffe_cert_validation: self.disable_spiffe_cert_validation.unwrap_or(false),
        };
        let names = [
            &s.default_svid_name,
            &s.default_bundle_name,
            &s.default_all_bundles_name,
        ];
        for (i, a) in names.iter().enumerate() {
            if names.iter().skip(i + 1).any(|b| b == a) {
                return Err(ConfigError::Sds(format!(
                    "the resource name {a:?} is given to two of default_svid_name, \
                     default_bundle_name and default_all_bundles_name"
                )));
            }
            // A SPIFFE ID or trust domain ID already means something.
            if a.starts_with("spiffe://") {
                return Err(ConfigError::Sds(format!(
                    "{a:?} cannot be a default name: it is a SPIFFE ID"
                )));
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_spires_and_clashing_or_empty_names_are_refused() {
        assert_eq!(
            SdsSection::default().settings().unwrap(),
            SdsSettings::default()
        );
        let same = SdsSection {
            default_bundle_name: Some("default".into()),
            ..SdsSection::default()
        };
        assert!(same
            .settings()
            .unwrap_err()
            .to_string()
            .contains("\"default\" is given to two"));
        let empty = SdsSection {
            default_all_bundles_name: Some(" ".into()),
            ..SdsSection::default()
        };
        assert_eq!(
            empty.settings().unwrap_err().to_string(),
            "sds.default_all_bundles_name must not be empty"
        );
        let id = SdsSection {
            default_svid_name: Some("spiffe://example.org/x".into()),
            ..SdsSection::default()
        };
        assert!(id.settings().is_err());
    }
}
