//! Client half of `tpm` node attestation: the agent sends its TPM's EK and
//! attestation key (a DevID or AK, at a persistent handle) with that key's
//! certificate; it answers the server's challenge by recovering the sealed
//! credential with TPM2_ActivateCredential and signing the nonce with the
//! key (a TPM2_Quote when the server asks for PCRs).
//!
//! TPM calls block on the device, so they run on blocking threads.

#[cfg(feature = "tpm")]
mod device;
#[cfg(feature = "tpm")]
mod key;

#[cfg(feature = "tpm")]
pub use key::TpmKey;

#[cfg(feature = "tpm")]
use prost::Message;
use rsa::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256};
use signet_core::{SpiffeId, TrustDomain};
use signet_proto::node::TpmParams;
#[cfg(feature = "tpm")]
use signet_proto::node::{TpmChallenge, TpmChallengeResponse};

use crate::config::TpmConfig;

#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error("tpm: this agent was built without TPM support (cargo feature `tpm`)")]
    NotBuilt,
    #[error("tpm: cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("tpm: {path} holds no certificate")]
    NoCertificate { path: String },
    #[error("tpm: invalid TCTI {0:?} (e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321)")]
    Tcti(String),
    #[error("tpm: {0:#010x} is not a persistent handle")]
    Handle(u32),
    #[error("tpm: PCR {0} does not exist")]
    Pcr(u32),
    #[error("tpm: {what}: {message}")]
    Device { what: &'static str, message: String },
    #[error("tpm: the TPM refused to activate the credential (the EK or the attestation key is not the one the server sealed it for): {0}")]
    Activate(String),
    #[error("tpm: the EK is not an RSA 2048 key")]
    EkNotRsa,
    #[error("tpm: the attestation key is not an ECDSA P-256 key")]
    KeyNotEcc,
    #[error("tpm: the server's challenge cannot be parsed: {0}")]
    Challenge(String),
    #[error("tpm: the blocking TPM task failed: {0}")]
    Task(String),
}

/// The node's TPM evidence, read once at start.
pub struct TpmIdentity {
    params: TpmParams,
    ek_hash: String,
    #[cfg(feature = "tpm")]
    device: device::Device,
}

impl TpmIdentity {
    /// Reads the certificate and, on a blocking thread, the EK's and the
    /// key's public parts.
    pub async fn load(cfg: &TpmConfig) -> Result<Self, TpmError> {
        let path = cfg.certificate_path.display().to_string();
        let text = tokio::fs::read(&cfg.certificate_path)
            .await
            .map_err(|e| TpmError::Read {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let cert_chain = signet_core::pem::decode_certs(&text).map_err(|e| TpmError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if cert_chain.is_empty() {
            return Err(TpmError::NoCertificate { path });
        }
        Self::open(cfg, cert_chain).await
    }

    #[cfg(feature = "tpm")]
    async fn open(cfg: &TpmConfig, cert_chain: Vec<Vec<u8>>) -> Result<Self, TpmError> {
        let device = device::Device {
            tcti: cfg.tcti.clone(),
            key_handle: cfg.key_handle,
            ek_handle: cfg.ek_handle,
        };
        let reader = device.clone();
        let (ek_public, attestation_key_public) = blocking(move || reader.publics()).await?;
        Ok(Self {
            ek_hash: ek_hash(&ek_public)?,
            params: TpmParams {
                ek_public,
                attestation_key_public,
                cert_chain,
            },
            device,
        })
    }

    #[cfg(not(feature = "tpm"))]
    async fn open(_cfg: &TpmConfig, _cert_chain: Vec<Vec<u8>>) -> Result<Self, TpmError> {
        Err(TpmError::NotBuilt)
    }

    pub fn params(&self) -> TpmParams {
        self.params.clone()
    }

    /// `.../signet/agent/tpm/<SHA-256 of the EK's SubjectPublicKeyInfo>`.
    pub fn agent_id(&self, td: &TrustDomain) -> Result<SpiffeId, signet_core::SpiffeIdError> {
        td.id(&format!("/signet/agent/tpm/{}", self.ek_hash))
    }

    /// The answer to the server's `TpmChallenge`.
    #[cfg(feature = "tpm")]
    pub async fn answer(&self, challenge: &[u8]) -> Result<Vec<u8>, TpmError> {
        let challenge =
            TpmChallenge::decode(challenge).map_err(|e| TpmError::Challenge(e.to_string()))?;
        let device = self.device.clone();
        blocking(move || {
            let credential = device.activate(&challenge.id_object, &challenge.encrypted_secret)?;
            let proof = device.prove(&challenge.nonce, &challenge.pcrs)?;
            Ok(TpmChallengeResponse {
                credential,
                attest: proof.attest,
                signature: proof.signature,
                pcr_values: proof.pcr_values,
            }
            .encode_to_vec())
        })
        .await
    }

    #[cfg(not(feature = "tpm"))]
    pub async fn answer(&self, _challenge: &[u8]) -> Result<Vec<u8>, TpmError> {
        Err(TpmError::NotBuilt)
    }
}

#[cfg(feature = "tpm")]
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TpmError> + Send + 'static,
) -> Result<T, TpmError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TpmError::Task(e.to_string()))?
}

/// SHA-256 of the EK's SubjectPublicKeyInfo DER, from its TPMT_PUBLIC.
#[cfg(feature = "tpm")]
fn ek_hash(ek_public: &[u8]) -> Result<String, TpmError> {
    use tss_esapi::structures::Public;
    use tss_esapi::traits::UnMarshall;
    let Ok(Public::Rsa {
        parameters, unique, ..
    }) = Public::unmarshall(ek_public)
    else {
        return Err(TpmError::EkNotRsa);
    };
    let exponent = match parameters.exponent().value() {
        0 => 65_537,
        e => e,
    };
    spki_hash(unique.value(), exponent)
}

#[cfg_attr(not(feature = "tpm"), allow(dead_code))]
fn spki_hash(modulus: &[u8], exponent: u32) -> Result<String, TpmError> {
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(modulus),
        rsa::BigUint::from(exponent),
    )
    .map_err(|_| TpmError::EkNotRsa)?;
    let der = key.to_public_key_der().map_err(|_| TpmError::EkNotRsa)?;
    Ok(hex::encode(Sha256::digest(der.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ek_hash_is_that_of_its_spki_der() {
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let public = key.to_public_key();
        let der = public.to_public_key_der().unwrap();
        use rsa::traits::PublicKeyParts;
        let hash = spki_hash(&public.n().to_bytes_be(), 65_537).unwrap();
        assert_eq!(hash, hex::encode(Sha256::digest(der.as_bytes())));
    }
}
