//! The verbs that end an agent's attestation: evict (it may attest again)
//! and ban (it may not), audited alike.

use serde_json::json;
use signet_proto::admin::{Agent, AgentRequest};
use tonic::{Request, Response, Status};

use super::audited::audit_caller;
use super::AdminService;
use crate::api::convert::admin_agent;
use crate::api::validate::parse_agent_id;

impl AdminService {
    /// Evicts the agent the request names, or bans it when `ban`.
    pub(super) async fn end_agent(
        &self,
        request: Request<AgentRequest>,
        ban: bool,
    ) -> Result<Response<Agent>, Status> {
        let verb = if ban { "agent.ban" } else { "agent.evict" };
        let caller = audit_caller(&request);
        let args = json!({"spiffe_id": request.get_ref().spiffe_id});
        let res: Result<Response<Agent>, Status> = async {
            let id = parse_agent_id(&request.get_ref().spiffe_id)?;
            let agent = if ban {
                let agent = self.state.ds.ban_agent(&id).await?;
                tracing::info!(agent = %id, "agent banned");
                agent
            } else {
                let agent = self.state.ds.evict_agent(&id).await?;
                tracing::info!(agent = %id, "agent evicted");
                agent
            };
            Ok(Response::new(admin_agent(&agent)))
        }
        .await;
        self.audited(caller, verb, args, res).await
    }
}
