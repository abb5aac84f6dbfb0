//! Local authorization on the Workload API socket, over the Cedar policies
//! the server syncs to this agent (no server round trip): Signet's own
//! `signet.authz.v1.Authorization` (`Decide` for `signet-agent api
//! authorize` and any service; `FetchPolicies` for services that decide
//! in-process with `signet-authz`) and Envoy's `ext_authz` v3 (see
//! `ext_authz`). Deciding needs no attestation: the answer depends only on
//! the question and the policies. Handing out the policies' text does.

mod ext_authz;
mod question;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use signet_core::{Selector, SpiffeId};
use signet_proto::authz::authorization_server::Authorization;
use signet_proto::authz::{
    DecideRequest, DecideResponse, FetchPoliciesRequest, PolicySet, PolicySource,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub use ext_authz::{ExtAuthz, ExtAuthzServer};
pub use question::{decide, Question};
pub use signet_proto::authz::authorization_server::AuthorizationServer;

use super::stream::{channel_with_first, stream_state};
use super::{status, ResponseStream, WorkloadApi};
use crate::cache::Snapshot;

/// The calls the audit log names.
const FETCH_POLICIES: &str = "fetch_policies";

#[derive(Clone)]
pub struct Authz {
    api: WorkloadApi,
}

impl Authz {
    pub fn new(api: WorkloadApi) -> Self {
        Self { api }
    }
}

/// `None` when the caller has no identity here.
fn policies_state(snapshot: &Snapshot, selectors: &HashSet<Selector>) -> Option<PolicySet> {
    snapshot.matching(selectors).next()?;
    Some(PolicySet {
        sources: snapshot
            .policies
            .sources
            .iter()
            .map(|(name, text)| PolicySource {
                name: name.clone(),
                text: text.clone(),
            })
            .collect(),
        trust_domain: snapshot.trust_domain.as_str().to_owned(),
    })
}

fn question(req: DecideRequest) -> Result<Question, Status> {
    let principal = SpiffeId::parse_with_path(&req.principal)
        .map_err(|e| status::invalid_argument(format!("principal {:?}: {e}", req.principal)))?;
    let source_address = match req.source_address.as_str() {
        "" => None,
        a => Some(
            a.parse::<IpAddr>()
                .map_err(|e| status::invalid_argument(format!("source_address {a:?}: {e}")))?,
        ),
    };
    let svid_remaining = match u64::try_from(req.svid_remaining_secs) {
        Ok(0) => None,
        Ok(s) => Some(Duration::from_secs(s)),
        Err(_) => {
            return Err(status::invalid_argument(
                "svid_remaining_secs must not be negative",
            ))
        }
    };
    Ok(Question {
        principal,
        action: req.action,
        resource: req.resource,
        source_address,
        svid_remaining,
        attributes: question::attributes(&req.context_json)?,
    })
}

#[tonic::async_trait]
impl Authorization for Authz {
    type FetchPoliciesStream = ResponseStream<PolicySet>;

    async fn decide(
        &self,
        request: Request<DecideRequest>,
    ) -> Result<Response<DecideResponse>, Status> {
        let snapshot = self.api.ready_snapshot()?;
        let req = request.into_inner();
        let at = match u64::try_from(req.time_unix_ms) {
            Ok(0) => self.api.clock.now(),
            Ok(ms) => std::time::UNIX_EPOCH + Duration::from_millis(ms),
            Err(_) => {
                return Err(status::invalid_argument(
                    "time_unix_ms must not be negative",
                ))
            }
        };
        let d = decide(&snapshot, question(req)?, at)?;
        Ok(Response::new(DecideResponse {
            allow: d.allow,
            policies: d.policies,
            errors: d.errors,
        }))
    }

    async fn fetch_policies(
        &self,
        request: Request<FetchPoliciesRequest>,
    ) -> Result<Response<Self::FetchPoliciesStream>, Status> {
        let admitted = self.api.admit(FETCH_POLICIES, &request).await?;
        let Some(first) = policies_state(&admitted.snapshot, &admitted.selectors) else {
            let refused = super::x509::no_identity();
            self.api.record(
                FETCH_POLICIES,
                Some(&admitted.peer),
                &admitted.selectors,
                vec![],
                Some(&refused),
            );
            return Err(refused);
        };
        self.api.record(
            FETCH_POLICIES,
            Some(&admitted.peer),
            &admitted.selectors,
            first.sources.iter().map(|s| s.name.clone()).collect(),
            None,
        );
        let (tx, rx) = channel_with_first(Some(first.clone()));
        self.api.spawn_stream(
            tx.clone(),
            stream_state(
                self.api.cache.clone(),
                admitted.selectors,
                tx,
                policies_state,
                Some(first),
            ),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
