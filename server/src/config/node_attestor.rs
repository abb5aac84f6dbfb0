//! `[node_attestor]`: how agents may prove their node besides join tokens.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// `[node_attestor]`: node attestors beyond join tokens.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeAttestorConfig {
    pub x509pop: Option<X509PopConfig>,
    pub tpm: Option<TpmConfig>,
}

/// `[node_attestor.tpm]`: PEM file of the CAs (owner or manufacturer)
/// whose DevID/AK certificates may attest, and the PCRs (SHA-256 bank)
/// reported as `tpm:pcr:<i>:<hex>` selectors.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TpmConfig {
    pub ca_bundle_path: PathBuf,
    #[serde(default)]
    pub pcrs: Vec<u32>,
}

impl TpmConfig {
    /// PCR indices exist (0 to 23).
    pub fn checked(self) -> Result<Self, ConfigError> {
        let limit = crate::attest::tpm::PCR_COUNT;
        match self.pcrs.iter().find(|i| **i >= limit) {
            Some(i) => Err(ConfigError::NodeAttestor(format!(
                "tpm.pcrs: PCR {i} does not exist (0 to {} expected)",
                limit - 1
            ))),
            None => Ok(self),
        }
    }
}

/// `[node_attestor.x509pop]`: PEM file of the CA certificates (one or
/// more) whose host certificates may attest.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct X509PopConfig {
    pub ca_bundle_path: PathBuf,
}
