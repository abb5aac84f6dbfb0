//! The Node API (agents, over TLS): attestation, agent SVID renewal, the
//! Sync stream and batch X.509-SVID signing.

use std::pin::Pin;

use futures::Stream;
use signet_core::clock::unix_seconds;
use signet_proto::node::node_server::Node;
use signet_proto::node::{
    attest_request, attest_response, AttestRequest, AttestResponse, AttestResult, AuditCheckpoint,
    AuditCheckpointAck, BatchSignX509SvidRequest, BatchSignX509SvidResponse, MintJwtSvidRequest,
    MintJwtSvidResponse, NewDownstreamX509caRequest, NewDownstreamX509caResponse,
    RenewAgentRequest, RenewAgentResponse, SyncRequest, SyncResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{authenticate, authenticate_agent};
use super::convert::node_bundle;
use super::status::ApiError;
use super::validate::check_audience;
use super::ServerState;
use crate::anomaly::Observation;
use crate::attest::x509pop::{self, CHALLENGE_TTL};
use crate::attest::{issue_agent, method_name, AttestError, AttestedAgent, Exchange, Verdict};
use crate::audit::{Decision, Outcome};
use crate::ca::{csr_public_key, MintedJwt};
use crate::datastore::AgentRecord;
use crate::telemetry::metrics::code_label;

pub struct NodeService {
    state: ServerState,
}

impl NodeService {
    pub fn new(state: ServerState) -> Self {
        Self { state }
    }

    async fn mint_jwt(
        &self,
        agent: &AgentRecord,
        entry_id: &str,
        audience: &[String],
    ) -> Result<MintedJwt, ApiError> {
        check_audience(audience)?;
        let rec = self
            .state
            .ds
            .get_entry(entry_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("entry {entry_id:?} not found")))?;
        if !crate::alias::authorizes(self.state.ds.as_ref(), agent, &rec).await? {
            return Err(ApiError::PermissionDenied(
                "entry is not authorized for this agent".into(),
            ));
        }
        let entry = rec.entry;
        let minted = self
            .state
            .ca
            .mint_jwt_svid(&entry.spiffe_id, audience, entry.jwt_svid_ttl)?;
        self.state
            .ds
            .record_jwt(
                &minted.jti,
                &entry.spiffe_id,
                &minted.kid,
                minted.expires_at(),
            )
            .await?;
        self.state
            .audit
            .append(Decision::JwtSvidIssued {
                spiffe_id: entry.spiffe_id.to_string(),
                jti: minted.jti.clone(),
                audience: audience.to_vec(),
                agent_id: agent.spiffe_id.to_string(),
                ttl_s: u64::try_from(minted.expires_at() - minted.issued_at()).unwrap_or(0),
            })
            .await?;
        self.state.metrics.jwt_svid_issued();
        self.state.anomalies.observe(Observation::JwtMinted {
            agent: agent.spiffe_id.clone(),
            spiffe_id: entry.spiffe_id.clone(),
            audience: audience.to_vec(),
        });
        // The token is a bearer credential: log who and when, never the token.
        tracing::info!(
            agent = %agent.spiffe_id,
            spiffe_id = %entry.spiffe_id,
            entry_id = %entry.id,
            // The count only: a caller picks the audiences, up to 4 KiB.
            audiences = audience.len(),
            expires_at = minted.expires_at(),
            "issued JWT-SVID"
        );
        Ok(minted)
    }
}

/// Who is attesting: the source address, and the join token's hash (for
/// the anomaly detectors; never the token).
#[derive(Clone)]
struct Caller {
    source: String,
    token: Option<String>,
}

/// Counts the attestation outcome and logs a refusal.
fn counted<T>(
    state: &ServerState,
    method: &str,
    caller: &Caller,
    res: Result<T, AttestError>,
) -> Result<T, Status> {
    match res {
        Ok(v) => {
            state.metrics.node_attestation(method, "ok");
            Ok(v)
        }
        Err(e) => Err(refusal(state, method, caller, e)),
    }
}

/// Logs, counts and audits a refused attestation; its status for the agent.
fn refusal(state: &ServerState, method: &str, caller: &Caller, e: AttestError) -> Status {
    let source = caller.source.as_str();
    tracing::warn!(method, source, error = %e, "node attestation refused");
    state.anomalies.observe(Observation::AttestationRefused {
        source: caller.source.clone(),
        token: caller.token.clone(),
    });
    let decision = Decision::NodeAttestation {
        method: method.to_owned(),
        agent_id: String::new(),
        source: source.to_owned(),
        outcome: Outcome::Refused {
            reason: e.to_string(),
        },
    };
    let auditor = state.audit.clone();
    // The refusal is answered at once; its record follows (and is logged if
    // it cannot be written).
    tokio::spawn(async move { auditor.append(decision).await });
    let status = Status::from(e);
    state
        .metrics
        .node_attestation(method, &code_label(status.code()));
    status
}

/// Waits (at most the challenge's lifetime) for the agent's signature.
async fn challenge_response(
    inbound: &mut Streaming<AttestRequest>,
) -> Result<Vec<u8>, AttestError> {
    let next = tokio::time::timeout(CHALLENGE_TTL, inbound.message()).await;
    match next {
        Err(_) => Err(AttestError::StaleChallenge),
        Ok(Ok(Some(AttestRequest {
            step: Some(attest_request::Step::ChallengeResponse(sig)),
        }))) if !sig.is_empty() => Ok(sig),
        Ok(_) => Err(AttestError::MissingResponse),
    }
}

/// Why `method` cannot be used here: what enables it.
fn not_enabled(method: &str) -> String {
    let needs = match method {
        x509pop::ATTESTATION_TYPE | crate::attest::tpm::ATTESTATION_TYPE => "ca_bundle_path",
        _ => "settings",
    };
    format!(
        "{method} node attestation is not enabled on this server (no [node_attestor.{method}] {needs})"
    )
}

async fn issue(
    state: &ServerState,
    method: &str,
    verdict: Verdict,
    csr: &[u8],
) -> Result<AttestedAgent, AttestError> {
    issue_agent(state.ds.as_ref(), &state.ca, method, verdict, csr).await
}

/// Records the new agent SVID and builds the attestation result.
async fn finish_attestation(
    state: &ServerState,
    caller: &Caller,
    attested: AttestedAgent,
) -> Result<AttestResponse, Status> {
    let source = caller.source.as_str();
    state
        .ds
        .record_x509(
            &attested.svid.serial_hex,
            &attested.record.spiffe_id,
            &attested.svid.authority_id,
            unix_seconds(attested.svid.not_after),
        )
        .await
        .map_err(ApiError::from)?;
    state
        .audit
        .append(Decision::NodeAttestation {
            method: attested.record.attestation_type.clone(),
            agent_id: attested.record.spiffe_id.to_string(),
            source: source.to_owned(),
            outcome: Outcome::Ok,
        })
        .await
        .map_err(ApiError::from)?;
    state.metrics.x509_svid_issued();
    state.anomalies.observe(Observation::Attested {
        agent: attested.record.spiffe_id.clone(),
        method: attested.record.attestation_type.clone(),
        source: source.to_owned(),
    });
    let aliases = crate::alias::aliases_of(state.ds.as_ref(), &attested.record)
        .await
        .map_err(ApiError::from)?;
    tracing::info!(
        agent = %attested.record.spiffe_id,
        method = %attested.record.attestation_type,
        serial = %attested.record.serial,
        selectors = ?attested.record.selectors.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        aliases = ?aliases.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "agent attested"
    );
    Ok(AttestResponse {
        step: Some(attest_response::Step::Result(AttestResult {
            spiffe_id: attested.record.spiffe_id.to_string(),
            svid_chain: attested.svid.chain,
            bundle: Some(node_bundle(&state.ca.bundle())),
            authority_id: attested.svid.authority_id.to_string(),
        })),
    })
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Node for NodeService {
    type AttestStream = BoxStream<AttestResponse>;
    type SyncStream = BoxStream<SyncResponse>;

    async fn attest(
        &self,
        request: Request<Streaming<AttestRequest>>,
    ) -> Result<Response<Self::AttestStream>, Status> {
        let source_ip = super::auth::peer_addr(&request).map(|a| a.ip());
        self.state.limits.attestation(source_ip)?;
        let source = source_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let mut caller = Caller {
            source,
            token: None,
        };
        let mut inbound = request.into_inner();
        // The stream is read again for the x509pop challenge's answer.
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("attestation stream closed before params"))?;
        let Some(attest_request::Step::Params(params)) = first.step else {
            return Err(Status::invalid_argument(
                "the first attestation message must carry params",
            ));
        };
        let Some(evidence) = params.method else {
            self.state
                .metrics
                .node_attestation("none", &code_label(tonic::Code::InvalidArgument));
            return Err(AttestError::MissingMethod.into());
        };
        let method = method_name(&evidence);
        if let signet_proto::node::attest_params::Method::JoinToken(token) = &evidence {
            caller.token = Some(crate::anomaly::token_hash(token));
        }
        let Some(attestor) = self.state.attestors.get(method) else {
            self.state
                .metrics
                .node_attestation(method, &code_label(tonic::Code::Unimplemented));
            return Err(Status::unimplemented(not_enabled(method)));
        };
        // Counted once: here only a refusal, else when it finishes.
        let exchange = match attestor.begin(&evidence).await {
            Ok(exchange) => exchange,
            Err(e) => return Err(refusal(&self.state, method, &caller, e)),
        };
        match exchange {
            Exchange::Done(verdict) => {
                let res = issue(&self.state, method, verdict, &params.csr).await;
                let attested = counted(&self.state, method, &caller, res)?;
                let result = finish_attestation(&self.state, &caller, attested).await?;
                Ok(Response::new(Box::pin(tokio_stream::once(Ok(result)))))
            }
            Exchange::Challenge { challenge, pending } => {
                let (tx, rx) = mpsc::channel(2);
                let challenge = AttestResponse {
                    step: Some(attest_response::Step::Challenge(challenge)),
                };
                if tx.send(Ok(challenge)).await.is_err() {
                    return Err(Status::cancelled("attestation stream closed"));
                }
                let state = self.state.clone();
                tokio::spawn(async move {
                    let res = match challenge_response(&mut inbound).await {
                        Ok(answer) => match pending.answer(&answer).await {
                            Ok(verdict) => issue(&state, method, verdict, &params.csr).await,
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    };
                    let out = match counted(&state, method, &caller, res) {
                        Ok(attested) => finish_attestation(&state, &caller, attested).await,
                        Err(status) => Err(status),
                    };
                    let _ = tx.send(out).await;
                });
                Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
            }
        }
    }

    async fn renew_agent(
        &self,
        request: Request<RenewAgentRequest>,
    ) -> Result<Response<RenewAgentResponse>, Status> {
        let agent = authenticate_agent(&self.state, &request).await?;
        let key = csr_public_key(&request.get_ref().csr)
            .map_err(|e| ApiError::InvalidArgument(format!("invalid CSR: {e}")))?;
        let svid = self.state.ca.issue_x509_svid(
            &agent.spiffe_id,
            &key,
            &[],
            Some(self.state.ca.default_svid_ttl()),
        )?;
        self.state
            .ds
            .update_agent_svid(
                &agent.spiffe_id,
                &svid.serial_hex,
                unix_seconds(svid.not_after),
            )
            .await?;
        self.state
            .ds
            .record_x509(
                &svid.serial_hex,
                &agent.spiffe_id,
                &svid.authority_id,
                unix_seconds(svid.not_after),
            )
            .await?;
        self.state
            .audit
            .append(Decision::AgentRenewal {
                agent_id: agent.spiffe_id.to_string(),
                serial: svid.serial_hex.clone(),
            })
            .await?;
        self.state.metrics.x509_svid_issued();
        tracing::info!(agent = %agent.spiffe_id, serial = %svid.serial_hex, "renewed agent SVID");
        Ok(Response::new(RenewAgentResponse {
            svid_chain: svid.chain,
            authority_id: svid.authority_id.to_string(),
        }))
    }

    async fn sync(
        &self,
        request: Request<SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let (agent, serial) = authenticate(&self.state, &request).await?;
        tracing::debug!(
            agent = %agent.spiffe_id,
            since = request.get_ref().since_revision,
            "sync stream opened"
        );
        let since = request.get_ref().since_revision;
        let reported = request.get_ref().agent_time_unix_ms;
        if reported != 0 {
            let ours = self
                .state
                .ca
                .now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            self.state.anomalies.observe(Observation::ClockReport {
                agent: agent.spiffe_id.clone(),
                skew_ms: reported.saturating_sub(ours),
            });
        }
        let rx = super::sync::start(self.state.clone(), agent, serial, since);
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn batch_sign_x509_svid(
        &self,
        request: Request<BatchSignX509SvidRequest>,
    ) -> Result<Response<BatchSignX509SvidResponse>, Status> {
        let agent = authenticate_agent(&self.state, &request).await?;
        let params = request.into_inner().params;
        self.state
            .limits
            .x509_signing(&agent.spiffe_id, params.len())?;
        let results = super::batch_sign::sign(&self.state, &agent, params).await?;
        Ok(Response::new(BatchSignX509SvidResponse { results }))
    }

    async fn report_audit_checkpoint(
        &self,
        request: Request<AuditCheckpoint>,
    ) -> Result<Response<AuditCheckpointAck>, Status> {
        let agent = authenticate_agent(&self.state, &request).await?;
        let c = request.into_inner();
        if c.seq == 0 || crate::audit::chain::from_hex(&c.hash).is_none() {
            return Err(Status::invalid_argument(
                "an audit checkpoint needs seq >= 1 and a 64-digit lowercase hex hash",
            ));
        }
        self.state
            .audit
            .append(Decision::AgentAuditCheckpoint {
                agent_id: agent.spiffe_id.to_string(),
                log_seq: c.seq,
                log_hash: c.hash.to_ascii_lowercase(),
                agent_time_ms: c.time_ms,
            })
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(AuditCheckpointAck {}))
    }

    async fn mint_jwt_svid(
        &self,
        request: Request<MintJwtSvidRequest>,
    ) -> Result<Response<MintJwtSvidResponse>, Status> {
        let agent = authenticate_agent(&self.state, &request).await?;
        self.state.limits.jwt_minting(&agent.spiffe_id)?;
        let req = request.get_ref();
        let res = self.mint_jwt(&agent, &req.entry_id, &req.audience).await;
        if let Err(e) = &res {
            tracing::warn!(agent = %agent.spiffe_id, entry_id = %req.entry_id, error = %e, "refused to mint a JWT-SVID");
        }
        let minted = res?;
        Ok(Response::new(MintJwtSvidResponse {
            issued_at: minted.issued_at(),
            expires_at: minted.expires_at(),
            token: minted.svid.token,
        }))
    }

    async fn new_downstream_x509ca(
        &self,
        request: Request<NewDownstreamX509caRequest>,
    ) -> Result<Response<NewDownstreamX509caResponse>, Status> {
        let res = super::downstream::new_downstream_ca(&self.state, request).await;
        if let Err(status) = &res {
            tracing::warn!(code = ?status.code(), reason = status.message(), "refused to sign a downstream CA");
        }
        Ok(Response::new(res?))
    }
}
