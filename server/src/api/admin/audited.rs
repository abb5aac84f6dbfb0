//! Every Admin API call that changes something leaves one audit record:
//! who called (the admin socket's peer uid), the verb, its arguments with
//! secrets left out (a join token's value, CSR keys and bundle contents
//! never appear), and how it went.

use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

use super::AdminService;
use crate::audit::{Decision, Outcome};

/// `uid:N` of the process on the admin socket's other end.
pub(super) fn audit_caller<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
        .map_or_else(
            || "unknown".to_owned(),
            |cred| format!("uid:{}", cred.uid()),
        )
}

/// The SPIFFE ID a CSR asks for, or what was wrong with it.
pub(super) fn csr_spiffe_id(csr: &[u8]) -> String {
    signet_core::x509::parse_csr(csr).map_or_else(
        |e| format!("(invalid CSR: {e})"),
        |c| c.spiffe_id.to_string(),
    )
}

impl AdminService {
    /// Records the call, then hands its result back unchanged. A record
    /// that cannot be written is logged: the change itself was made.
    pub(super) async fn audited<T>(
        &self,
        caller: String,
        verb: &str,
        args: serde_json::Value,
        res: Result<T, Status>,
    ) -> Result<T, Status> {
        let outcome = match &res {
            Ok(_) => Outcome::Ok,
            Err(status) => Outcome::Refused {
                reason: format!("{:?}: {}", status.code(), status.message()),
            },
        };
        let _ = self
            .state
            .audit
            .append(Decision::Admin {
                caller,
                verb: verb.to_owned(),
                args,
                outcome,
            })
            .await;
        res
    }
}
