//! The agent's own key (its mTLS identity to the server): in memory and the
//! data dir as PKCS#8, or made in the TPM (`[key_manager.tpm]`), where only
//! the TPM's sealed blobs leave it. A TPM signature blocks on the device:
//! the TLS handshake is the one caller that cannot wait, and it signs once
//! per connection.

use std::sync::Arc;

use rcgen::KeyPair;
#[cfg(feature = "tpm")]
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};
use signet_core::x509::X509Error;
use signet_core::SpiffeId;
use zeroize::Zeroizing;

use super::tpm::TpmError;
use crate::storage::StoredKey;

/// Where new agent keys are made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeySource {
    /// In memory; PKCS#8 in the data dir (0600).
    #[default]
    Software,
    /// In the TPM `tcti` names, under the storage key at `parent`.
    Tpm { tcti: String, parent: u32 },
}

/// The agent's key.
#[derive(Clone)]
pub enum AgentKey {
    /// PKCS#8 DER; wiped when dropped.
    Software(Zeroizing<Vec<u8>>),
    /// A key resident in the TPM.
    #[cfg(feature = "tpm")]
    Tpm(Arc<super::tpm::TpmKey>),
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentKey::Software(_) => f.write_str("AgentKey::Software(..)"),
            #[cfg(feature = "tpm")]
            AgentKey::Tpm(k) => write!(f, "AgentKey::Tpm({k:?})"),
        }
    }
}

impl KeySource {
    /// A new key; the TPM's on a blocking thread.
    pub async fn generate(&self) -> Result<AgentKey, TpmError> {
        match self {
            KeySource::Software => {
                let key = KeyPair::generate().map_err(|e| TpmError::Task(e.to_string()))?;
                Ok(AgentKey::Software(Zeroizing::new(key.serialize_der())))
            }
            #[cfg(feature = "tpm")]
            KeySource::Tpm { tcti, parent } => {
                let (tcti, parent) = (tcti.clone(), *parent);
                let key = tokio::task::spawn_blocking(move || {
                    super::tpm::TpmKey::generate(&tcti, parent)
                })
                .await
                .map_err(|e| TpmError::Task(e.to_string()))??;
                Ok(AgentKey::Tpm(Arc::new(key)))
            }
            #[cfg(not(feature = "tpm"))]
            KeySource::Tpm { .. } => Err(TpmError::NotBuilt),
        }
    }

    /// The key a stored one stands for: a TPM key's blobs are used with
    /// the configured TPM.
    pub fn restore(&self, stored: StoredKey) -> Result<AgentKey, TpmError> {
        match (stored, self) {
            (StoredKey::Pkcs8(der), _) => Ok(AgentKey::Software(der)),
            #[cfg(feature = "tpm")]
            (StoredKey::Tpm { public, private }, KeySource::Tpm { tcti, parent }) => {
                Ok(AgentKey::Tpm(Arc::new(super::tpm::TpmKey::from_blobs(
                    tcti, *parent, public, private,
                )?)))
            }
            (StoredKey::Tpm { .. }, _) => Err(TpmError::Device {
                what: "the stored agent key",
                message: "it lives in a TPM, and no [key_manager.tpm] is configured".into(),
            }),
        }
    }
}

impl AgentKey {
    pub fn stored(&self) -> StoredKey {
        match self {
            AgentKey::Software(der) => StoredKey::Pkcs8(der.clone()),
            #[cfg(feature = "tpm")]
            AgentKey::Tpm(k) => StoredKey::Tpm {
                public: k.public.clone(),
                private: k.private.clone(),
            },
        }
    }

    /// Whether `leaf` certifies this key.
    pub fn matches_leaf(&self, leaf: &[u8]) -> Result<(), X509Error> {
        match self {
            AgentKey::Software(der) => signet_core::x509::key_matches_leaf(leaf, der),
            #[cfg(feature = "tpm")]
            AgentKey::Tpm(k) => signet_core::x509::public_key_matches_leaf(leaf, &k.point),
        }
    }

    /// A CSR naming `id`, signed by the key (on a blocking thread for the TPM).
    pub async fn csr(&self, id: &SpiffeId) -> Result<Vec<u8>, X509Error> {
        match self {
            AgentKey::Software(der) => {
                let key = KeyPair::try_from(der.as_slice())?;
                signet_core::x509::build_csr(&key, id)
            }
            #[cfg(feature = "tpm")]
            AgentKey::Tpm(k) => {
                let (k, id) = (Resident(k.clone()), id.clone());
                tokio::task::spawn_blocking(move || signet_core::x509::build_csr(&k, &id))
                    .await
                    .map_err(|e| X509Error::Issue(e.to_string()))?
            }
        }
    }

    /// The key as rustls signs the TLS handshake with it.
    pub fn tls_key(&self) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        match self {
            AgentKey::Software(der) => {
                let der = rustls::pki_types::PrivateKeyDer::Pkcs8(der.to_vec().into());
                signet_core::crypto::tls_provider()
                    .key_provider
                    .load_private_key(der)
            }
            #[cfg(feature = "tpm")]
            AgentKey::Tpm(k) => Ok(Arc::new(Resident(k.clone()))),
        }
    }
}

/// A TPM key where rcgen and rustls want a signer.
#[cfg(feature = "tpm")]
#[derive(Debug, Clone)]
struct Resident(Arc<super::tpm::TpmKey>);

#[cfg(feature = "tpm")]
impl Resident {
    fn der_signature(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let fixed = self.0.sign(message).map_err(|e| e.to_string())?;
        signet_core::crypto::ecdsa_der(&fixed).ok_or_else(|| "not an ECDSA signature".into())
    }
}

#[cfg(feature = "tpm")]
impl PublicKeyData for Resident {
    fn der_bytes(&self) -> &[u8] {
        &self.0.point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

#[cfg(feature = "tpm")]
impl SigningKey for Resident {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.der_signature(message)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

#[cfg(feature = "tpm")]
impl rustls::sign::SigningKey for Resident {
    fn choose_scheme(
        &self,
        offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&rustls::SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(self.clone()) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ECDSA
    }
}

#[cfg(feature = "tpm")]
impl rustls::sign::Signer for Resident {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        // The handshake runs on a runtime worker: hand its other tasks to
        // another worker while the TPM answers.
        let sign = || self.der_signature(message);
        let signed = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(sign)
            }
            _ => sign(),
        };
        signed.map_err(|e| rustls::Error::General(format!("TPM signature: {e}")))
    }

    fn scheme(&self) -> rustls::SignatureScheme {
        rustls::SignatureScheme::ECDSA_NISTP256_SHA256
    }
}
