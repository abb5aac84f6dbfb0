//! `[node_attestor]`: how the agent proves its node without a join token;
//! `[key_manager]`: where its own key lives.

use std::path::PathBuf;

use serde::Deserialize;

/// `[node_attestor]`: how the agent proves its node without a join token.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeAttestorFile {
    pub x509pop: Option<X509PopConfig>,
    pub tpm: Option<TpmConfig>,
}

/// `[node_attestor.tpm]`: the TPM (a TCTI string, `device:/dev/tpmrm0` by
/// default), the persistent handle of the attestation key (DevID or AK)
/// and its certificate (PEM, chain after the leaf allowed); the EK is read
/// from `ek_handle`, else made from the TCG default RSA template.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TpmConfig {
    #[serde(default = "default_tcti")]
    pub tcti: String,
    pub certificate_path: PathBuf,
    pub key_handle: u32,
    pub ek_handle: Option<u32>,
}

fn default_tcti() -> String {
    "device:/dev/tpmrm0".into()
}

/// `[node_attestor.x509pop]`: the host certificate (PEM, chain after the
/// leaf allowed) and its PKCS#8 key (PEM); used instead of a join token.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct X509PopConfig {
    pub certificate_path: PathBuf,
    pub private_key_path: PathBuf,
}

/// `[key_manager]`: the agent's own key in software (no table), or in the
/// TPM.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyManagerFile {
    pub tpm: Option<TpmKeyConfig>,
}

/// `[key_manager.tpm]`: the TPM (TCTI, `device:/dev/tpmrm0` by default) and
/// the persistent handle of the storage key (SRK) the agent's keys are made
/// under, `0x81000001` by default.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TpmKeyConfig {
    #[serde(default = "default_tcti")]
    pub tcti: String,
    #[serde(default = "default_parent")]
    pub parent_handle: u32,
}

fn default_parent() -> u32 {
    0x8100_0001
}
