//! `tpm` node attestation: the agent presents its TPM's endorsement key
//! (EK) and an attestation key (a DevID or AK) with the certificate an
//! owner or manufacturer CA gave that key. The server checks the
//! certificate, that the key it names is the one described (and that the
//! TPM made it and cannot export it), then seals a credential to the EK for
//! that key's Name: only the TPM holding both recovers it. The key also
//! signs a fresh nonce, by TPM2_Quote over the configured PCRs when there
//! are any, so a copied certificate without its TPM is useless.
//!
//! The agent's ID is `spiffe://<td>/signet/agent/tpm/<SHA-256 of the EK's
//! SubjectPublicKeyInfo DER>`; selectors `tpm:ek_hash:<hex>`,
//! `tpm:subject:cn:<cn>`, and `tpm:pcr:<i>:<sha256 hex>` for each
//! configured PCR (from a restricted key only: an unrestricted one signs
//! any digest, so root on the node could forge a quote).

mod credential;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use prost::Message;
use rand::RngCore;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use rsa::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256};
use signet_core::SpiffeId;
use signet_proto::node::attest_params::Method;
use signet_proto::node::{TpmChallenge, TpmChallengeResponse, TpmParams};
use x509_parser::prelude::FromDer;

use super::x509pop::{verify_chain, Challenges, TrustedCa, NONCE_LEN};
use super::{method_name, AttestError, Commit, Exchange, NodeAttestor, PendingChallenge, Verdict};
use crate::ca::CertificateAuthority;
use crate::datastore::{DataStore, DataStoreError};
use wire::{attr, PublicKey};

pub const ATTESTATION_TYPE: &str = "tpm";
/// PCRs a TPM 2.0 has (PC Client profile).
pub const PCR_COUNT: u32 = 24;
/// Attributes of a key the TPM made itself and cannot let out, fit to sign.
const RESIDENT_SIGNING_KEY: u32 =
    attr::FIXED_TPM | attr::FIXED_PARENT | attr::SENSITIVE_DATA_ORIGIN | attr::SIGN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmError {
    #[error("tpm: {0}")]
    Wire(#[from] wire::WireError),
    #[error("tpm: {0}")]
    Credential(#[from] credential::CredentialError),
    #[error("tpm: the endorsement key must be RSA 2048 (ECC EKs are not supported yet)")]
    EkNotRsa,
    #[error("tpm: the attestation key must be ECC P-256")]
    KeyNotEcc,
    #[error("tpm: the attestation key's certificate is not trusted: {0}")]
    Untrusted(String),
    #[error("tpm: the attestation key's certificate does not certify the key sent (its public key differs)")]
    CertificateKeyMismatch,
    #[error("tpm: the attestation key is not a signing key made in and bound to the TPM (fixedTPM, fixedParent, sensitiveDataOrigin and sign must be set, decrypt clear); attributes {0:#010x}")]
    NotResident(u32),
    #[error("tpm: cannot parse the challenge response: {0}")]
    BadResponse(String),
    #[error("tpm: the credential does not match: the EK and the attestation key are not in the same TPM")]
    WrongCredential,
    #[error("tpm: the signature does not verify with the attestation key")]
    BadSignature,
    #[error("tpm: the quote is not for this challenge: {0}")]
    BadQuote(String),
}

/// What was established about the node before the challenge.
#[derive(Debug, Clone)]
struct Node {
    ek: rsa::RsaPublicKey,
    ek_hash: String,
    key: wire::Public,
    point: Vec<u8>,
    common_name: Option<String>,
}

/// The server half: trusted CAs, the PCRs to report, the open challenges.
#[derive(Clone)]
pub struct TpmAttestor {
    cas: Arc<Vec<TrustedCa>>,
    pcrs: Arc<Vec<u32>>,
    challenges: Arc<Challenges>,
    ds: Arc<dyn DataStore>,
    ca: Arc<CertificateAuthority>,
}

impl TpmAttestor {
    /// `pcrs` are reported as selectors; they must be below [`PCR_COUNT`].
    pub fn new(
        cas: Vec<TrustedCa>,
        mut pcrs: Vec<u32>,
        ds: Arc<dyn DataStore>,
        ca: Arc<CertificateAuthority>,
    ) -> Self {
        pcrs.sort_unstable();
        pcrs.dedup();
        Self {
            cas: Arc::new(cas),
            pcrs: Arc::new(pcrs),
            challenges: Arc::new(Challenges::default()),
            ds,
            ca,
        }
    }

    fn agent_id(&self, ek_hash: &str) -> Result<SpiffeId, AttestError> {
        self.ca
            .trust_domain()
            .id(&format!("/signet/agent/{ATTESTATION_TYPE}/{ek_hash}"))
            .map_err(|e| TpmError::Untrusted(e.to_string()).into())
    }

    /// The evidence checked: the certificate chains to a trusted CA and
    /// certifies exactly the resident key sent.
    fn check(&self, params: &TpmParams) -> Result<Node, TpmError> {
        let ek = wire::parse_public("EK", &params.ek_public)?;
        let PublicKey::Rsa { modulus, exponent } = &ek.key else {
            return Err(TpmError::EkNotRsa);
        };
        if modulus.len() != 256 {
            return Err(TpmError::EkNotRsa);
        }
        let ek_key = credential::ek_key(modulus, *exponent)?;
        let spki = ek_key
            .to_public_key_der()
            .map_err(|e| credential::CredentialError::EkKey(e.to_string()))?;
        let key = wire::parse_public("attestation key", &params.attestation_key_public)?;
        let PublicKey::EccP256 { point } = &key.key else {
            return Err(TpmError::KeyNotEcc);
        };
        if !key.has(RESIDENT_SIGNING_KEY) || key.has(attr::DECRYPT) {
            return Err(TpmError::NotResident(key.attributes));
        }
        let host = verify_chain(&self.cas, &params.cert_chain, self.ca.now())
            .map_err(|e| TpmError::Untrusted(e.to_string()))?;
        if certified_point(&host.leaf_der)? != *point {
            return Err(TpmError::CertificateKeyMismatch);
        }
        Ok(Node {
            ek: ek_key,
            ek_hash: hex::encode(Sha256::digest(spki.as_bytes())),
            point: point.clone(),
            key,
            common_name: host.common_name,
        })
    }

    async fn challenge(&self, params: &TpmParams) -> Result<Exchange, AttestError> {
        let node = self.check(params)?;
        if self
            .ds
            .get_agent(&self.agent_id(&node.ek_hash)?)
            .await?
            .is_some_and(|a| a.banned)
        {
            return Err(DataStoreError::AgentBanned.into());
        }
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(secret.as_mut());
        let sealed = credential::make_credential(&node.ek, &node.key.name, secret.as_ref())
            .map_err(TpmError::from)?;
        let nonce = self.challenges.issue(self.ca.now());
        // PCR values are only trusted from a key that cannot sign a forged quote.
        let pcrs = if node.key.has(attr::RESTRICTED) {
            self.pcrs.as_ref().clone()
        } else {
            if !self.pcrs.is_empty() {
                tracing::warn!(
                    ek_hash = %node.ek_hash,
                    "tpm: the attestation key is not restricted, so its PCR values cannot be trusted: no tpm:pcr selectors for this node"
                );
            }
            Vec::new()
        };
        let challenge = TpmChallenge {
            id_object: sealed.id_object,
            encrypted_secret: sealed.encrypted_secret,
            nonce: nonce.to_vec(),
            pcrs: pcrs.clone(),
        };
        Ok(Exchange::Challenge {
            challenge: challenge.encode_to_vec(),
            pending: Box::new(Pending {
                attestor: self.clone(),
                node,
                secret,
                nonce,
                pcrs,
            }),
        })
    }
}

/// The uncompressed P-256 point a certificate certifies.
fn certified_point(leaf: &[u8]) -> Result<Vec<u8>, TpmError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf)
        .map_err(|e| TpmError::Untrusted(e.to_string()))?;
    let spki = cert.public_key();
    let p256 = spki.algorithm.algorithm.to_id_string() == "1.2.840.10045.2.1"
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|c| c.to_id_string() == "1.2.840.10045.3.1.7");
    if !p256 {
        return Err(TpmError::KeyNotEcc);
    }
    Ok(spki.subject_public_key.data.to_vec())
}

/// A challenge sent, waiting for the agent's answer.
struct Pending {
    attestor: TpmAttestor,
    node: Node,
    secret: zeroize::Zeroizing<[u8; 32]>,
    nonce: [u8; NONCE_LEN],
    pcrs: Vec<u32>,
}

impl Pending {
    fn verdict(&self, response: &[u8]) -> Result<Verdict, AttestError> {
        let attestor = &self.attestor;
        attestor.challenges.redeem(&self.nonce, attestor.ca.now())?;
        let answer = TpmChallengeResponse::decode(response)
            .map_err(|e| TpmError::BadResponse(e.to_string()))?;
        // Both are 32 bytes; compared in constant time all the same.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            answer.credential.as_slice(),
            self.secret.as_slice(),
        )) {
            return Err(TpmError::WrongCredential.into());
        }
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.node.point);
        let mut selectors = vec![format!("ek_hash:{}", self.node.ek_hash)];
        if self.pcrs.is_empty() {
            key.verify(&self.nonce, &answer.signature)
                .map_err(|_| TpmError::BadSignature)?;
        } else {
            key.verify(&answer.attest, &answer.signature)
                .map_err(|_| TpmError::BadSignature)?;
            selectors.extend(self.quoted_pcrs(&answer)?);
        }
        selectors.extend(
            self.node
                .common_name
                .iter()
                .map(|cn| format!("subject:cn:{cn}")),
        );
        Ok(Verdict {
            agent_id: attestor.agent_id(&self.node.ek_hash)?,
            selectors: super::node_selectors(ATTESTATION_TYPE, &selectors),
            commit: Commit::Record,
        })
    }

    /// `pcr:<i>:<hex>` for each PCR asked for, once the signed quote is
    /// shown to be for this nonce and to cover exactly the values sent.
    fn quoted_pcrs(&self, answer: &TpmChallengeResponse) -> Result<Vec<String>, TpmError> {
        let quote = wire::parse_quote(&answer.attest)?;
        if quote.extra_data != self.nonce {
            return Err(TpmError::BadQuote("it quotes another nonce".into()));
        }
        if quote.pcrs != self.pcrs {
            return Err(TpmError::BadQuote(format!(
                "it covers PCRs {:?}, not {:?}",
                quote.pcrs, self.pcrs
            )));
        }
        if answer.pcr_values.len() != self.pcrs.len()
            || answer.pcr_values.iter().any(|v| v.len() != 32)
        {
            return Err(TpmError::BadQuote(format!(
                "{} PCR values of SHA-256 size expected",
                self.pcrs.len()
            )));
        }
        let mut digest = Sha256::new();
        for value in &answer.pcr_values {
            digest.update(value);
        }
        if digest.finalize().as_slice() != quote.pcr_digest {
            return Err(TpmError::BadQuote(
                "the PCR values sent are not the ones quoted".into(),
            ));
        }
        Ok(self
            .pcrs
            .iter()
            .zip(&answer.pcr_values)
            .map(|(i, v)| format!("pcr:{i}:{}", hex::encode(v)))
            .collect())
    }
}

#[async_trait]
impl PendingChallenge for Pending {
    async fn answer(self: Box<Self>, response: &[u8]) -> Result<Verdict, AttestError> {
        self.verdict(response)
    }
}

#[async_trait]
impl NodeAttestor for TpmAttestor {
    fn method(&self) -> &'static str {
        ATTESTATION_TYPE
    }

    async fn begin(&self, evidence: &Method) -> Result<Exchange, AttestError> {
        let Method::Tpm(params) = evidence else {
            return Err(AttestError::WrongMethod(method_name(evidence)));
        };
        self.challenge(params).await
    }
}

#[cfg(test)]
mod tests;
