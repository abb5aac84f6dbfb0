//! x509pop node attestation: the agent presents a host certificate chain
//! that must lead to a CA of the configured bundle, then proves it holds the
//! leaf's key by signing a fresh, single-use server nonce. The agent's ID is
//! `spiffe://<td>/signet/agent/x509pop/<hex SHA-1 of the leaf DER>`.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use ring::signature;
use rustls_pki_types::{CertificateDer, UnixTime};
use signet_core::{Selector, SpiffeId, TrustDomain};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use async_trait::async_trait;
use signet_proto::node::attest_params::Method;

use super::{
    issue_agent, method_name, AttestError, AttestedAgent, Commit, Exchange, NodeAttestor,
    PendingChallenge, Verdict,
};
use crate::ca::CertificateAuthority;
use crate::datastore::{DataStore, DataStoreError};

pub const ATTESTATION_TYPE: &str = "x509pop";
pub use super::challenge::{Challenges, CHALLENGE_TTL, NONCE_LEN};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509PopError {
    #[error("x509pop: no host certificate chain was presented")]
    EmptyChain,
    #[error("x509pop: cannot parse the host certificate: {0}")]
    Parse(String),
    #[error("x509pop: host certificate is not trusted: it does not chain to a CA of the x509pop bundle ({0})")]
    Untrusted(String),
    #[error("x509pop: unsupported host key algorithm {0} (EC P-256, P-384 or RSA expected)")]
    UnsupportedKey(String),
    #[error("x509pop: the challenge signature does not verify with the host certificate's key")]
    BadSignature,
    #[error("cannot load CA bundle {0}: {1}")]
    Bundle(String, String),
}

/// A CA of the x509pop bundle.
#[derive(Debug, Clone)]
pub struct TrustedCa {
    pub der: Vec<u8>,
    /// Lowercase hex SHA-1 of the DER.
    pub fingerprint: String,
}

/// Lowercase hex SHA-1 of `der` (the fingerprint x509 tools print).
pub fn sha1_hex(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        der,
    ))
}

/// Reads a PEM bundle of one or more CA certificates.
pub fn load_bundle(path: &Path) -> Result<Vec<TrustedCa>, X509PopError> {
    let err = |m: String| X509PopError::Bundle(path.display().to_string(), m);
    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = signet_core::pem::decode_certs(&text).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block".into()));
    }
    certs
        .into_iter()
        .map(|der| {
            let anchor = CertificateDer::from(der.as_slice());
            webpki::anchor_from_trusted_cert(&anchor).map_err(|e| err(format!("{e:?}")))?;
            Ok(TrustedCa {
                fingerprint: sha1_hex(&der),
                der,
            })
        })
        .collect()
}

/// What a verified host certificate says about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCert {
    pub leaf_der: Vec<u8>,
    pub leaf_fingerprint: String,
    /// SHA-1 of the bundle CA that anchored the chain.
    pub ca_fingerprint: String,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
}

impl HostCert {
    pub fn agent_id(&self, td: &TrustDomain) -> Result<SpiffeId, signet_core::SpiffeIdError> {
        td.id(&format!(
            "/signet/agent/{ATTESTATION_TYPE}/{}",
            self.leaf_fingerprint
        ))
    }

    /// `x509pop:subject:cn:<cn>`, `x509pop:ca:fingerprint:<fp>`,
    /// `x509pop:san:dns:<name>`; values a selector cannot hold are skipped.
    pub fn selectors(&self) -> Vec<Selector> {
        let mut raw = vec![format!("ca:fingerprint:{}", self.ca_fingerprint)];
        raw.extend(self.common_name.iter().map(|cn| format!("subject:cn:{cn}")));
        raw.extend(self.dns_names.iter().map(|d| format!("san:dns:{d}")));
        super::node_selectors(ATTESTATION_TYPE, &raw)
    }
}

/// Checks `chain` (DER, leaf first, then intermediates) against each CA of
/// `cas` at `now`, for client authentication.
pub fn verify_chain(
    cas: &[TrustedCa],
    chain: &[Vec<u8>],
    now: SystemTime,
) -> Result<HostCert, X509PopError> {
    let (leaf, rest) = chain.split_first().ok_or(X509PopError::EmptyChain)?;
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let ee =
        EndEntityCert::try_from(&leaf_der).map_err(|e| X509PopError::Parse(format!("{e:?}")))?;
    let intermediates: Vec<CertificateDer<'_>> = rest
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| X509PopError::Untrusted("clock is before 1970".into()))?;
    let time = UnixTime::since_unix_epoch(since_epoch);
    let mut last = String::from("the bundle is empty");
    for ca in cas {
        let ca_der = CertificateDer::from(ca.der.as_slice());
        let anchor = match webpki::anchor_from_trusted_cert(&ca_der) {
            Ok(a) => a,
            Err(e) => {
                last = format!("{e:?}");
                continue;
            }
        };
        let anchors = [anchor];
        let verified = ee.verify_for_usage(
            signet_core::crypto::SIGNATURE_ALGORITHMS,
            &anchors,
            &intermediates,
            time,
            KeyUsage::client_auth(),
            None,
            None,
        );
        match verified {
            Ok(_) => {
                let (common_name, dns_names) = names(leaf)?;
                return Ok(HostCert {
                    leaf_fingerprint: sha1_hex(leaf),
                    leaf_der: leaf.clone(),
                    ca_fingerprint: ca.fingerprint.clone(),
                    common_name,
                    dns_names,
                });
            }
            Err(e) => last = format!("{e:?}"),
        }
    }
    Err(X509PopError::Untrusted(last))
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, X509PopError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| X509PopError::Parse(e.to_string()))
}

fn names(leaf: &[u8]) -> Result<(Option<String>, Vec<String>), X509PopError> {
    let cert = parse(leaf)?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let mut dns = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                if let GeneralName::DNSName(d) = name {
                    dns.push(d.to_ascii_lowercase());
                }
            }
        }
    }
    Ok((cn, dns))
}

/// Verifies `sig` over `nonce` with the leaf's public key: ECDSA (ASN.1 DER;
/// SHA-256, and for P-384 also SHA-384), RSA PKCS#1 v1.5 SHA-256, Ed25519.
pub fn verify_signature(leaf: &[u8], nonce: &[u8], sig: &[u8]) -> Result<(), X509PopError> {
    let cert = parse(leaf)?;
    let spki = cert.public_key();
    let key = spki.subject_public_key.data.as_ref();
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let algs: &[&dyn signature::VerificationAlgorithm] = match (alg.as_str(), curve.as_deref()) {
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => &[&signature::ECDSA_P256_SHA256_ASN1],
        ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => &[
            &signature::ECDSA_P384_SHA256_ASN1,
            &signature::ECDSA_P384_SHA384_ASN1,
        ],
        ("1.2.840.113549.1.1.1", _) => &[&signature::RSA_PKCS1_2048_8192_SHA256],
        ("1.3.101.112", _) => &[&signature::ED25519],
        (other, curve) => {
            return Err(X509PopError::UnsupportedKey(match curve {
                Some(c) => format!("{other} ({c})"),
                None => other.to_owned(),
            }))
        }
    };
    if algs.iter().any(|alg| {
        signature::UnparsedPublicKey::new(*alg, key)
            .verify(nonce, sig)
            .is_ok()
    }) {
        Ok(())
    } else {
        Err(X509PopError::BadSignature)
    }
}

/// The server half: the trusted CAs, the open challenges, and what it needs
/// to record the agent and issue its SVID.
#[derive(Clone)]
pub struct X509PopAttestor {
    cas: Arc<Vec<TrustedCa>>,
    challenges: Arc<Challenges>,
    ds: Arc<dyn DataStore>,
    ca: Arc<CertificateAuthority>,
}

impl X509PopAttestor {
    pub fn new(cas: Vec<TrustedCa>, ds: Arc<dyn DataStore>, ca: Arc<CertificateAuthority>) -> Self {
        Self {
            cas: Arc::new(cas),
            challenges: Arc::new(Challenges::default()),
            ds,
            ca,
        }
    }

    /// Step 1: the chain is trusted and its agent is not banned; returns
    /// the host certificate and the nonce to sign.
    pub async fn begin(
        &self,
        chain: &[Vec<u8>],
    ) -> Result<(HostCert, [u8; NONCE_LEN]), AttestError> {
        let host = verify_chain(&self.cas, chain, self.ca.now())?;
        let id = host
            .agent_id(self.ca.trust_domain())
            .map_err(|e| X509PopError::Parse(e.to_string()))?;
        if self.ds.get_agent(&id).await?.is_some_and(|a| a.banned) {
            return Err(DataStoreError::AgentBanned.into());
        }
        Ok((host, self.challenges.issue(self.ca.now())))
    }

    /// Step 2: the nonce is spent and the signature checked; the agent is
    /// then recorded (re-created after an eviction, refused when banned)
    /// with the host certificate's selectors.
    fn verdict(
        &self,
        host: &HostCert,
        nonce: &[u8; NONCE_LEN],
        response: &[u8],
    ) -> Result<Verdict, AttestError> {
        self.challenges.redeem(nonce, self.ca.now())?;
        verify_signature(&host.leaf_der, nonce, response)?;
        let agent_id = host
            .agent_id(self.ca.trust_domain())
            .map_err(|e| X509PopError::Parse(e.to_string()))?;
        Ok(Verdict {
            agent_id,
            selectors: host.selectors(),
            commit: Commit::Record,
        })
    }

    /// Steps 2 and 3: the answer checked, the agent recorded and its SVID
    /// issued for the CSR's key.
    pub async fn finish(
        &self,
        host: &HostCert,
        nonce: &[u8; NONCE_LEN],
        response: &[u8],
        csr: &[u8],
    ) -> Result<AttestedAgent, AttestError> {
        let verdict = self.verdict(host, nonce, response)?;
        issue_agent(self.ds.as_ref(), &self.ca, ATTESTATION_TYPE, verdict, csr).await
    }
}

/// A challenge sent, waiting for the agent's signature.
struct Pending {
    attestor: X509PopAttestor,
    host: HostCert,
    nonce: [u8; NONCE_LEN],
}

#[async_trait]
impl PendingChallenge for Pending {
    async fn answer(self: Box<Self>, response: &[u8]) -> Result<Verdict, AttestError> {
        self.attestor.verdict(&self.host, &self.nonce, response)
    }
}

#[async_trait]
impl NodeAttestor for X509PopAttestor {
    fn method(&self) -> &'static str {
        ATTESTATION_TYPE
    }

    async fn begin(&self, evidence: &Method) -> Result<Exchange, AttestError> {
        let Method::X509pop(pop) = evidence else {
            return Err(AttestError::WrongMethod(method_name(evidence)));
        };
        let (host, nonce) = X509PopAttestor::begin(self, &pop.cert_chain).await?;
        Ok(Exchange::Challenge {
            challenge: nonce.to_vec(),
            pending: Box::new(Pending {
                attestor: self.clone(),
                host,
                nonce,
            }),
        })
    }
}

#[cfg(test)]
mod tests;
