//! The Admin API's authority transitions (prepare, activate, taint,
//! revoke): one audited shape for all four.

use serde_json::json;
use signet_proto::admin::Authority;
use tonic::{Response, Status};

use super::{audit_caller, authority_kind, AdminService};
use crate::api::convert::admin_authority;

/// One step of an authority's life.
#[derive(Debug, Clone, Copy)]
pub(super) enum Transition {
    Prepare,
    Activate,
    Taint,
    Revoke,
}

impl Transition {
    fn verb(self) -> &'static str {
        match self {
            Self::Prepare => "authority.prepare",
            Self::Activate => "authority.activate",
            Self::Taint => "authority.taint",
            Self::Revoke => "authority.revoke",
        }
    }
}

impl AdminService {
    /// Applies `step` to the authority of `kind` (`id` for taint and
    /// revoke), audited with the kind and id.
    pub(super) async fn authority_transition<T>(
        &self,
        request: &tonic::Request<T>,
        kind: i32,
        id: Option<&str>,
        step: Transition,
    ) -> Result<Response<Authority>, Status> {
        let caller = audit_caller(request);
        let args = match id {
            Some(id) => json!({"kind": kind, "id": id}),
            None => json!({"kind": kind}),
        };
        let res: Result<Response<Authority>, Status> = async {
            let kind = authority_kind(kind)?;
            let id = id.unwrap_or_default().trim();
            // The manager commits the bundle's new sequence and its event.
            let a = match step {
                Transition::Prepare => self.state.ca.prepare(kind).await?,
                Transition::Activate => self.state.ca.activate(kind).await?,
                Transition::Taint => self.state.ca.taint(kind, id).await?,
                Transition::Revoke => {
                    let a = self.state.ca.revoke(kind, id).await?;
                    // The revoked authority's CRL goes with it.
                    self.state.revocations.refresh().await?;
                    a
                }
            };
            Ok(Response::new(admin_authority(&a)))
        }
        .await;
        self.audited(caller, step.verb(), args, res).await
    }
}
