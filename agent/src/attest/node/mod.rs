//! Client half of node attestation (a [`NodeAttestorClient`] per method:
//! join token, x509pop), with the first server of the group that answers,
//! and renewal of the agent's own SVID ([`renew`]). The key and SVID live in
//! the data dir so a restart with a still valid SVID needs no new token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_core::x509::{cert_info, validate_x509_svid};
use signet_core::{Clock, SpiffeId, TrustDomain, X509Svid};
use signet_proto::node::{
    attest_params, attest_request, attest_response, AttestParams, AttestRequest, AttestResult,
    X509PopParams,
};
use tokio::sync::watch;

use super::key::{AgentKey, KeySource};
use super::AgentSvid;
use crate::cache::issuing_authority;
use crate::config::{Bootstrap, RuntimeConfig};
use crate::node_client::{
    self, NodeClient, NodeClientError, ResolveError, ServerAddresses, ServerTrust,
};
use crate::storage::{Storage, StorageError, StoredIdentity};

/// A stored SVID with less than this left is not worth reusing.
const MIN_REMAINING: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NodeAttestError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the agent SVID in {0} is missing or expired and no join token was given: generate one on the server (signet-server token generate) and restart the agent with --join-token TOKEN")]
    NoToken(String),
    #[error("no trust bundle to verify the server on first contact: pass --trust-bundle PEMFILE or --insecure-bootstrap")]
    NoBundle,
    #[error("cannot read trust bundle {path}: {message}")]
    TrustBundle { path: String, message: String },
    #[error(transparent)]
    Connect(#[from] node_client::NodeClientError),
    #[error("server refused attestation: {code:?}: {message}")]
    Refused { code: tonic::Code, message: String },
    /// Over the server's attestation rate limit: tried again after the hint.
    #[error("server rate-limited attestation: {message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// A partitioned link holds a call until HTTP/2 keep-alive gives up.
    #[error("no answer from the server within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("server answered attestation with something unexpected: {0}")]
    Protocol(String),
    #[error("SVID from the server is not acceptable: {0}")]
    BadSvid(#[from] signet_core::x509::X509Error),
    #[error("invalid SPIFFE ID: {0}")]
    SpiffeId(#[from] signet_core::SpiffeIdError),
    #[error(transparent)]
    HostCert(#[from] super::x509pop::HostCertError),
    #[error(transparent)]
    Tpm(#[from] super::tpm::TpmError),
}

impl NodeAttestError {
    /// Trying again cannot help: the token is missing, used, expired or
    /// refused, the agent is banned, or the host certificate is not
    /// accepted. An admin must act (a new token, a new certificate), so the
    /// service manager should stop restarting the agent.
    pub fn needs_new_credentials(&self) -> bool {
        match self {
            NodeAttestError::NoToken(_) => true,
            NodeAttestError::Refused { code, .. } => matches!(
                code,
                tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated
                    | tonic::Code::InvalidArgument
            ),
            _ => false,
        }
    }

    /// No answer from the server: it could not be reached, or the
    /// connection broke before it decided.
    pub fn is_unreachable(&self) -> bool {
        match self {
            NodeAttestError::Connect(_) | NodeAttestError::Timeout(_) => true,
            NodeAttestError::Refused { code, .. } => *code == tonic::Code::Unavailable,
            _ => false,
        }
    }

    /// What only a configuration change fixes.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            NodeAttestError::NoBundle
                | NodeAttestError::TrustBundle { .. }
                | NodeAttestError::HostCert(_)
                | NodeAttestError::Tpm(_)
        )
    }
}

/// One node attestation method, agent half: what the agent sends first,
/// and its answer when the server challenges it.
#[async_trait::async_trait]
pub trait NodeAttestorClient: Send + Sync {
    /// The ID the server will give this agent (the CSR names it).
    fn agent_id(&self, td: &TrustDomain) -> Result<SpiffeId, NodeAttestError>;
    /// The evidence sent with the first message.
    fn evidence(&self) -> attest_params::Method;
    /// The answer to the server's challenge; a method without one refuses.
    async fn answer(&self, challenge: &[u8]) -> Result<Vec<u8>, NodeAttestError>;
}

/// A join token given on the command line or in the config.
struct JoinToken(String);

#[async_trait::async_trait]
impl NodeAttestorClient for JoinToken {
    fn agent_id(&self, td: &TrustDomain) -> Result<SpiffeId, NodeAttestError> {
        csr_id(td, &self.0)
    }

    fn evidence(&self) -> attest_params::Method {
        attest_params::Method::JoinToken(self.0.clone())
    }

    async fn answer(&self, _challenge: &[u8]) -> Result<Vec<u8>, NodeAttestError> {
        Err(NodeAttestError::Protocol(
            "challenge for a join token".into(),
        ))
    }
}

#[async_trait::async_trait]
impl NodeAttestorClient for super::x509pop::HostIdentity {
    fn agent_id(&self, td: &TrustDomain) -> Result<SpiffeId, NodeAttestError> {
        Ok(super::x509pop::HostIdentity::agent_id(self, td)?)
    }

    fn evidence(&self) -> attest_params::Method {
        attest_params::Method::X509pop(X509PopParams {
            cert_chain: self.chain.clone(),
        })
    }

    async fn answer(&self, challenge: &[u8]) -> Result<Vec<u8>, NodeAttestError> {
        Ok(self.sign(challenge)?)
    }
}

#[async_trait::async_trait]
impl NodeAttestorClient for super::tpm::TpmIdentity {
    fn agent_id(&self, td: &TrustDomain) -> Result<SpiffeId, NodeAttestError> {
        Ok(super::tpm::TpmIdentity::agent_id(self, td)?)
    }

    fn evidence(&self) -> attest_params::Method {
        attest_params::Method::Tpm(self.params())
    }

    async fn answer(&self, challenge: &[u8]) -> Result<Vec<u8>, NodeAttestError> {
        Ok(super::tpm::TpmIdentity::answer(self, challenge).await?)
    }
}

/// The method that proves the node by itself (no token): a host
/// certificate or a TPM, whichever is configured (x509pop first).
pub(super) async fn hardware_method(
    config: &RuntimeConfig,
) -> Result<Option<Box<dyn NodeAttestorClient>>, NodeAttestError> {
    Ok(match (&config.x509pop, &config.tpm) {
        (Some(pop), _) => Some(Box::new(super::x509pop::HostIdentity::load(pop)?)),
        (None, Some(tpm)) => Some(Box::new(super::tpm::TpmIdentity::load(tpm).await?)),
        (None, None) => None,
    })
}

/// The agent's identity and the bundle to trust the server with.
pub struct Attested {
    pub svid: AgentSvid,
    pub bundle: Vec<Vec<u8>>,
    /// A fresh attestation (a new agent record): a cache from an earlier
    /// identity must not resume its sync revision.
    pub fresh: bool,
}

/// Reuses a still-valid stored SVID, else attests with the join token.
pub async fn obtain_identity(
    config: &RuntimeConfig,
    storage: &Storage,
    clock: &dyn Clock,
) -> Result<Attested, NodeAttestError> {
    let stored_bundle = storage.load_bundle()?;
    if let (Some(stored), Some(bundle)) = (storage.load_identity()?, stored_bundle.clone()) {
        match reuse(stored, &config.key_source, &bundle, clock.now()) {
            Ok(svid) => {
                tracing::info!(spiffe_id = %svid.x509.spiffe_id, "reusing stored agent SVID");
                return Ok(Attested {
                    svid,
                    bundle,
                    fresh: false,
                });
            }
            Err(reason) => tracing::info!(%reason, "stored agent SVID cannot be reused"),
        }
    }
    // A host certificate or a TPM can always attest again on its own; a
    // join token only once.
    let method: Box<dyn NodeAttestorClient> =
        match (hardware_method(config).await?, config.join_token.as_deref()) {
            (Some(method), _) => method,
            (None, Some(token)) => Box::new(JoinToken(token.to_owned())),
            // A token left for attesting again (edge nodes): taken at start too.
            (None, None) => match &config.reattest_token_file {
                Some(path) => match reattest::fresh_token(path, &Default::default()) {
                    Ok(token) => Box::new(JoinToken(token)),
                    Err(e) => {
                        return Err(NodeAttestError::NoToken(format!(
                            "{} ({e})",
                            storage.dir().display()
                        )))
                    }
                },
                None => {
                    return Err(NodeAttestError::NoToken(
                        storage.dir().display().to_string(),
                    ))
                }
            },
        };
    let trust = match &config.bootstrap {
        Bootstrap::Insecure => {
            tracing::warn!(
                "insecure bootstrap: the server certificate is not verified for this attestation"
            );
            ServerTrust::InsecureBootstrap
        }
        Bootstrap::TrustBundle(path) => {
            let mut certs = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|t| signet_core::pem::decode_certs(&t).map_err(|e| e.to_string()))
                .map_err(|message| NodeAttestError::TrustBundle {
                    path: path.display().to_string(),
                    message,
                })?;
            // The bundle last received from the server knows CAs rotated in
            // since the file was written.
            for ca in stored_bundle.into_iter().flatten() {
                if !certs.contains(&ca) {
                    certs.push(ca);
                }
            }
            ServerTrust::Bundle(watch::channel(Arc::new(certs)).1)
        }
        Bootstrap::DataDir => match stored_bundle {
            Some(b) => ServerTrust::Bundle(watch::channel(Arc::new(b)).1),
            None => return Err(NodeAttestError::NoBundle),
        },
    };
    let attested = attest_with(config, method.as_ref(), trust, clock).await?;
    storage.save_identity(&StoredIdentity {
        key: attested.svid.key.stored(),
        chain: attested.svid.x509.chain.clone(),
    })?;
    storage.save_bundle(&attested.bundle)?;
    tracing::info!(spiffe_id = %attested.svid.x509.spiffe_id, "node attested");
    Ok(attested)
}

fn reuse(
    stored: StoredIdentity,
    keys: &KeySource,
    bundle: &[Vec<u8>],
    now: SystemTime,
) -> Result<AgentSvid, String> {
    let leaf = stored.chain.first().ok_or("empty chain")?;
    let info = cert_info(leaf).map_err(|e| e.to_string())?;
    if info.not_after <= now + MIN_REMAINING {
        return Err("expired".into());
    }
    let key = keys.restore(stored.key).map_err(|e| e.to_string())?;
    key.matches_leaf(leaf).map_err(|e| e.to_string())?;
    let spiffe_id = info.spiffe_id.ok_or("no SPIFFE ID")?;
    Ok(AgentSvid {
        x509: X509Svid {
            authority_id: issuing_authority(&stored.chain, bundle, now)
                .unwrap_or_default()
                .into(),
            spiffe_id,
            chain: stored.chain,
            not_after: info.not_after,
            serial_hex: info.serial_hex,
        },
        key,
        received_at: now,
        generation: 0,
    })
}

async fn attest_with(
    config: &RuntimeConfig,
    method: &dyn NodeAttestorClient,
    trust: ServerTrust,
    clock: &dyn Clock,
) -> Result<Attested, NodeAttestError> {
    let key = config.key_source.generate().await?;
    // The server ignores the CSR's SAN for agents; name the ID we expect.
    let expected = method.agent_id(&config.trust_domain)?;
    let csr = key.csr(&expected).await?;
    let tls =
        node_client::tls::client_config(trust, node_client::server_id(&config.trust_domain)?, None)
            .map_err(NodeClientError::from)?;
    let result = loop {
        match attest_on_any(&config.server_address, &tls, method, &csr).await {
            // Nothing was consumed (the limit comes first): the same token
            // or certificate attests once the hint has passed.
            Err(NodeAttestError::RateLimited {
                message,
                retry_after,
            }) => {
                let wait = retry_after.min(MAX_RATE_LIMIT_WAIT);
                tracing::warn!(%message, wait_ms = wait.as_millis(), "attestation rate-limited; retrying");
                tokio::time::sleep(wait).await;
            }
            other => break other?,
        }
    };
    let bundle = result
        .bundle
        .map(|b| b.x509_authorities)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| NodeAttestError::Protocol("no bundle in the result".into()))?;
    let now = clock.now();
    let spiffe_id = validate_x509_svid(&result.svid_chain, &bundle, now)?;
    if spiffe_id.to_string() != result.spiffe_id {
        return Err(NodeAttestError::Protocol(format!(
            "result names {} but the SVID is for {spiffe_id}",
            result.spiffe_id
        )));
    }
    let mut svid = finish_svid(spiffe_id, result.svid_chain, key, now, 0)?;
    svid.x509.authority_id =
        pick_authority(result.authority_id, &svid.x509.chain, &bundle, now).into();
    Ok(Attested {
        svid,
        bundle,
        fresh: true,
    })
}

/// Attests with the first server of the group that answers, in the
/// configured order. Only a server that could not be reached, or whose
/// connection broke, is left for the next: one that answered decided, even
/// with a refusal (a join token is single-use, and another server would
/// refuse it alike).
async fn attest_on_any(
    servers: &ServerAddresses,
    tls: &Arc<rustls::ClientConfig>,
    method: &dyn NodeAttestorClient,
    csr: &[u8],
) -> Result<AttestResult, NodeAttestError> {
    let targets = servers.resolve().await.map_err(NodeClientError::from)?;
    let mut last = None;
    for target in &targets {
        let outcome = match node_client::connect_to(target, tls.clone()).await {
            Ok(client) => attest_on(client, method, csr.to_vec()).await,
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(result) => {
                tracing::info!(server = %target, "attested with the server");
                return Ok(result);
            }
            Err(error) if error.is_unreachable() => {
                tracing::warn!(server = %target, %error, "cannot attest with this server; trying the next");
                last = Some(error);
            }
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| {
        NodeClientError::from(ResolveError::NoAddress {
            name: servers.to_string().into(),
        })
        .into()
    }))
}

/// One attestation exchange: the evidence and CSR, the answer to a
/// challenge if the server sends one, until the result.
async fn attest_on(
    mut client: NodeClient,
    method: &dyn NodeAttestorClient,
    csr: Vec<u8>,
) -> Result<AttestResult, NodeAttestError> {
    let params = method.evidence();
    let request = AttestRequest {
        step: Some(attest_request::Step::Params(AttestParams {
            method: Some(params),
            csr,
        })),
    };
    // The stream stays open for the answer to a challenge.
    let (requests, outgoing) = tokio::sync::mpsc::channel(2);
    requests
        .send(request)
        .await
        .map_err(|_| NodeAttestError::Protocol("attestation stream closed".into()))?;
    let mut responses = client
        .attest(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await
        .map_err(refused)?
        .into_inner();
    let result =
        loop {
            let response =
                responses.message().await.map_err(refused)?.ok_or_else(|| {
                    NodeAttestError::Protocol("stream ended without a result".into())
                })?;
            match response.step {
                Some(attest_response::Step::Result(r)) => break r,
                Some(attest_response::Step::Challenge(challenge)) => {
                    let answer = AttestRequest {
                        step: Some(attest_request::Step::ChallengeResponse(
                            method.answer(&challenge).await?,
                        )),
                    };
                    requests.send(answer).await.map_err(|_| {
                        NodeAttestError::Protocol("attestation stream closed".into())
                    })?;
                }
                None => return Err(NodeAttestError::Protocol("empty response".into())),
            }
        };
    drop(requests);
    Ok(result)
}

fn csr_id(td: &TrustDomain, token: &str) -> Result<SpiffeId, NodeAttestError> {
    Ok(td
        .id(&format!("/signet/agent/join_token/{token}"))
        .or_else(|_| td.id("/signet/agent/join_token"))?)
}

fn finish_svid(
    spiffe_id: SpiffeId,
    chain: Vec<Vec<u8>>,
    key: AgentKey,
    now: SystemTime,
    generation: u64,
) -> Result<AgentSvid, NodeAttestError> {
    let leaf = chain
        .first()
        .ok_or(signet_core::x509::X509Error::EmptyChain)?;
    key.matches_leaf(leaf)?;
    let info = cert_info(leaf)?;
    Ok(AgentSvid {
        x509: X509Svid {
            spiffe_id,
            chain,
            not_after: info.not_after,
            serial_hex: info.serial_hex,
            authority_id: "".into(),
        },
        key,
        received_at: now,
        generation,
    })
}

/// The server's word for the signing authority, else found in the bundle.
fn pick_authority(
    from_server: String,
    chain: &[Vec<u8>],
    bundle: &[Vec<u8>],
    now: SystemTime,
) -> String {
    if from_server.is_empty() {
        issuing_authority(chain, bundle, now).unwrap_or_default()
    } else {
        from_server.to_ascii_lowercase()
    }
}

/// The longest wait on a rate limit's hint before trying again.
const MAX_RATE_LIMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn refused(status: tonic::Status) -> NodeAttestError {
    if let Some(retry_after) = signet_runtime::ratelimit::status::retry_after(&status) {
        return NodeAttestError::RateLimited {
            message: status.message().to_owned(),
            retry_after,
        };
    }
    NodeAttestError::Refused {
        code: status.code(),
        message: status.message().to_owned(),
    }
}

mod reattest;
mod renew;
#[cfg(test)]
mod tests;

pub use reattest::Reattest;
pub use renew::RenewLoop;
