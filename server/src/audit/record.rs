//! What one audit record says: a typed decision, when, and which server
//! took it. Records are stored as their canonical encoding (compact JSON,
//! fields in the order declared here), and the chain hashes exactly those
//! bytes, so what `audit show` prints is what was hashed.

use serde::{Deserialize, Serialize};

/// One security decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix milliseconds, from the server's clock.
    pub time_ms: i64,
    /// The server that took the decision.
    pub server_id: String,
    #[serde(flatten)]
    pub decision: Decision,
}

/// The decisions audited; `kind` names each in the encoding. No field ever
/// holds a secret: join tokens appear as their SHA-256, keys not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    /// A node attestation, granted or refused.
    NodeAttestation {
        method: String,
        /// Granted: the agent's SPIFFE ID; refused: empty.
        agent_id: String,
        source: String,
        outcome: Outcome,
    },
    /// An agent renewed its own SVID.
    AgentRenewal { agent_id: String, serial: String },
    /// An X.509-SVID signed for a workload entry.
    X509SvidIssued {
        spiffe_id: String,
        serial: String,
        entry_id: String,
        /// The agent it was signed for, or the admin caller.
        agent_id: String,
        ttl_s: u64,
    },
    /// A JWT-SVID minted.
    JwtSvidIssued {
        spiffe_id: String,
        jti: String,
        audience: Vec<String>,
        agent_id: String,
        ttl_s: u64,
    },
    /// A federated trust domain's bundle taken from its endpoint, or refused
    /// (the bundle held is kept).
    FederationRefresh {
        trust_domain: String,
        endpoint: String,
        /// The bundle's sequence when taken; 0 when refused.
        sequence: u64,
        outcome: Outcome,
    },
    /// A caller went over a rate limit (one record per caller and limit a
    /// minute, however many calls were refused).
    RateLimited {
        /// `attestation`, `x509_signing` or `jwt_minting`.
        limit: String,
        /// The source address or the agent's SPIFFE ID.
        subject: String,
        retry_after_ms: u64,
    },
    /// A detector found something unusual, and what was done about it.
    Anomaly {
        anomaly: String,
        /// The agent, SPIFFE ID, source address or token hash concerned.
        subject: String,
        detail: String,
        /// `log`, `throttle` or `ban`.
        action: String,
    },
    /// A CA or JWT signing authority changed state.
    AuthorityTransition {
        /// `x509` or `jwt`.
        authority: String,
        authority_id: String,
        /// `prepared`, `activated`, `retired`, `tainted` or `revoked`.
        state: String,
    },
    /// Records past `[audit] retention` deleted up to a signed checkpoint;
    /// its record (`through_seq + 1`) stays first, anchored by its hash.
    AuditPruned {
        through_seq: u64,
        checkpoint_hash: String,
        records: u64,
    },
    /// The head of an agent's own Workload API log, as it reported it.
    AgentAuditCheckpoint {
        agent_id: String,
        log_seq: u64,
        log_hash: String,
        agent_time_ms: i64,
    },
    /// A downstream server's X.509 CA signed (`NewDownstreamX509CA`).
    DownstreamCa {
        /// The downstream server's SPIFFE ID (its `downstream` entry's).
        spiffe_id: String,
        /// The new CA's authority id.
        authority_id: String,
        /// Unix seconds.
        not_after: i64,
    },
    /// An Admin API call that changes something.
    Admin {
        caller: String,
        verb: String,
        /// The request's arguments, secrets left out.
        args: serde_json::Value,
        outcome: Outcome,
    },
}

/// How a decision went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Refused { reason: String },
}

impl Decision {
    /// The `kind` as the encoding names it (for `audit show --kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::NodeAttestation { .. } => "node_attestation",
            Decision::AgentRenewal { .. } => "agent_renewal",
            Decision::X509SvidIssued { .. } => "x509_svid_issued",
            Decision::JwtSvidIssued { .. } => "jwt_svid_issued",
            Decision::FederationRefresh { .. } => "federation_refresh",
            Decision::Admin { .. } => "admin",
            Decision::RateLimited { .. } => "rate_limited",
            Decision::Anomaly { .. } => "anomaly",
            Decision::AuthorityTransition { .. } => "authority_transition",
            Decision::AuditPruned { .. } => "audit_pruned",
            Decision::AgentAuditCheckpoint { .. } => "agent_audit_checkpoint",
            Decision::DownstreamCa { .. } => "downstream_ca",
        }
    }

    /// The SPIFFE IDs the record is about (for `--spiffe-id`).
    pub fn spiffe_ids(&self) -> Vec<&str> {
        match self {
            Decision::NodeAttestation { agent_id, .. }
            | Decision::AgentRenewal { agent_id, .. }
            | Decision::AgentAuditCheckpoint { agent_id, .. } => {
                vec![agent_id]
            }
            Decision::X509SvidIssued {
                spiffe_id,
                agent_id,
                ..
            }
            | Decision::JwtSvidIssued {
                spiffe_id,
                agent_id,
                ..
            } => vec![spiffe_id, agent_id],
            Decision::FederationRefresh { trust_domain, .. } => vec![trust_domain],
            Decision::Admin { caller, .. } => vec![caller],
            Decision::RateLimited { subject, .. } | Decision::Anomaly { subject, .. } => {
                vec![subject]
            }
            Decision::AuthorityTransition { authority_id, .. } => vec![authority_id],
            Decision::AuditPruned { .. } => vec![],
            Decision::DownstreamCa { spiffe_id, .. } => vec![spiffe_id],
        }
    }

    /// The agent the record is about, if any (for `--agent`).
    pub fn agent(&self) -> Option<&str> {
        match self {
            Decision::NodeAttestation { agent_id, .. }
            | Decision::AgentRenewal { agent_id, .. }
            | Decision::AgentAuditCheckpoint { agent_id, .. }
            | Decision::X509SvidIssued { agent_id, .. }
            | Decision::JwtSvidIssued { agent_id, .. } => Some(agent_id),
            Decision::RateLimited { subject, .. } | Decision::Anomaly { subject, .. }
                if subject.starts_with("spiffe://") =>
            {
                Some(subject)
            }
            Decision::FederationRefresh { .. }
            | Decision::Admin { .. }
            | Decision::RateLimited { .. }
            | Decision::Anomaly { .. }
            | Decision::AuthorityTransition { .. }
            | Decision::AuditPruned { .. }
            | Decision::DownstreamCa { .. } => None,
        }
    }
}

impl AuditRecord {
    /// The bytes stored and hashed.
    pub fn canonical(&self) -> String {
        // Serializing owned strings, numbers and a JSON value cannot fail;
        // an empty record would still break the chain visibly, never silently.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(canonical: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoding_is_stable_and_round_trips() {
        let r = AuditRecord {
            time_ms: 1_700_000_000_000,
            server_id: "s1".into(),
            decision: Decision::X509SvidIssued {
                spiffe_id: "spiffe://example.org/web".into(),
                serial: "0a".into(),
                entry_id: "e1".into(),
                agent_id: "spiffe://example.org/signet/agent/x".into(),
                ttl_s: 3600,
            },
        };
        let c = r.canonical();
        assert_eq!(
            c,
            r#"{"time_ms":1700000000000,"server_id":"s1","kind":"x509_svid_issued","spiffe_id":"spiffe://example.org/web","serial":"0a","entry_id":"e1","agent_id":"spiffe://example.org/signet/agent/x","ttl_s":3600}"#
        );
        assert_eq!(AuditRecord::parse(&c).unwrap(), r);
        let refused = AuditRecord {
            time_ms: 1,
            server_id: "s1".into(),
            decision: Decision::NodeAttestation {
                method: "join_token".into(),
                agent_id: String::new(),
                source: "127.0.0.1".into(),
                outcome: Outcome::Refused {
                    reason: "unknown token".into(),
                },
            },
        };
        assert_eq!(AuditRecord::parse(&refused.canonical()).unwrap(), refused);
    }
}
