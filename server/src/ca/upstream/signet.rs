//! `[upstream_authority.signet]`: this server (a downstream, e.g. an edge
//! site) has each new X.509 CA signed by an upstream Signet server of the
//! same trust domain, authenticated by the X509-SVID the upstream's agent
//! on this host serves it. Its workloads then chain to the upstream roots.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{CertificateParams, SanType};
use signet_core::TrustDomain;

use super::signet_client;
use super::SignedCa;
use crate::ca::issuer::SharedKey;
use crate::ca::key_manager::{KeyManager, PrivateKey};
use crate::ca::{AuthorityKind, CaError};

/// Where the upstream is and how this server proves who it is to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSignet {
    /// The upstream's Node API, `HOST:PORT`.
    pub server_address: String,
    /// PEM roots the upstream's server SVID is checked against (with the
    /// bundle the local agent serves, once it serves one).
    pub trust_bundle_path: PathBuf,
    /// The upstream agent's Workload API socket on this host.
    pub workload_api_socket: PathBuf,
    /// Which of the SVIDs the agent serves this server is the downstream
    /// one; the first (the default identity) when `None`.
    pub spiffe_id: Option<signet_core::SpiffeId>,
    /// How long one signing exchange may take, end to end.
    pub timeout: Duration,
}

/// A key and its CSR not signed yet: kept across failed attempts so a
/// long outage does not leave a key per retry (a token object under
/// PKCS#11).
#[derive(Clone)]
struct Pending {
    private: PrivateKey,
    csr: Vec<u8>,
}

pub struct SignetUpstream {
    settings: UpstreamSignet,
    trust_domain: TrustDomain,
    pending: Mutex<Option<Pending>>,
}

impl std::fmt::Debug for SignetUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignetUpstream")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SignetUpstream {
    pub fn new(settings: UpstreamSignet, trust_domain: TrustDomain) -> Self {
        Self {
            settings,
            trust_domain,
            pending: Mutex::new(None),
        }
    }

    /// A new CA key from `keys` and the upstream's signature over it,
    /// living `ttl` at most (the upstream caps it by its own CA).
    pub async fn sign_new_ca(
        &self,
        keys: Arc<dyn KeyManager>,
        ttl: Duration,
    ) -> Result<(PrivateKey, SignedCa), CaError> {
        let held = self.take_pending();
        let pending = match held {
            Some(p) => p,
            None => {
                let td = self.trust_domain.clone();
                tokio::task::spawn_blocking(move || {
                    let private = keys.generate(AuthorityKind::X509, Default::default())?;
                    let csr = build_ca_csr(&td, &private)?;
                    Ok::<_, CaError>(Pending { private, csr })
                })
                .await
                .map_err(|e| CaError::Key(format!("generating a CA key: {e}")))??
            }
        };
        let ttl_secs = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
        let asked = tokio::time::timeout(
            self.settings.timeout,
            signet_client::new_downstream_ca(
                &self.settings,
                &self.trust_domain,
                pending.csr.clone(),
                ttl_secs,
            ),
        )
        .await;
        let signed = match asked {
            Ok(Ok(signed)) => signed,
            Ok(Err(e)) => {
                self.keep_pending(pending);
                return Err(CaError::Upstream(format!(
                    "{}: {}",
                    self.settings.server_address,
                    signet_client::chain(&e)
                )));
            }
            Err(_) => {
                self.keep_pending(pending);
                return Err(CaError::Upstream(format!(
                    "no answer from {} within {:?}",
                    self.settings.server_address, self.settings.timeout
                )));
            }
        };
        Ok((pending.private, signed))
    }

    pub fn settings(&self) -> &UpstreamSignet {
        &self.settings
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    fn take_pending(&self) -> Option<Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn keep_pending(&self, pending: Pending) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(pending);
    }
}

/// A CSR for a CA of `td` signed by `private` (in the token when held
/// there); the upstream decides the certificate's contents.
fn build_ca_csr(td: &TrustDomain, private: &PrivateKey) -> Result<Vec<u8>, CaError> {
    let key = SharedKey::from_private(private)?;
    let mut params = CertificateParams::default();
    let uri = td
        .id_string()
        .try_into()
        .map_err(|e: rcgen::Error| CaError::Key(format!("the CSR's URI SAN: {e}")))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params
        .serialize_request(&key)
        .map_err(|e| CaError::Key(format!("signing the CSR: {e}")))?;
    Ok(csr.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::build_ca_csr;
    use crate::ca::key_manager::software_key;
    use crate::ca::AuthorityKind;

    #[test]
    fn the_ca_csr_carries_the_key_the_key_manager_made() {
        let td = "example.org".parse().unwrap();
        let private = software_key(AuthorityKind::X509, Default::default()).unwrap();
        let csr = build_ca_csr(&td, &private).unwrap();
        let public = crate::ca::csr_public_key(&csr).unwrap();
        let crate::ca::PrivateKey::Software(der) = &private else {
            panic!("a software key")
        };
        let pair = rcgen::KeyPair::try_from(der.as_slice()).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(public.der_bytes(), pair.der_bytes());
    }
}
