//! The Admin API's policy calls: a source is validated against the Signet
//! schema and the trust domains this server knows (its own, those it holds
//! a bundle for or has a relationship with) before it is stored, so an
//! invalid policy never replaces a valid one; every error names its line
//! and column.

use std::collections::BTreeSet;

use signet_authz::{parse_source, PolicyError};
use signet_core::clock::unix_seconds;
use signet_proto::admin::{ListPoliciesResponse, Policy};

use crate::api::status::ApiError;
use crate::api::ServerState;
use crate::datastore::PolicyRecord;

/// A policy source is a few KB; this bounds what a caller can make us parse.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// The trust domains a policy may name.
async fn known_trust_domains(state: &ServerState) -> Result<BTreeSet<String>, ApiError> {
    let mut known = BTreeSet::from([state.ca.trust_domain().as_str().to_owned()]);
    for b in state.ds.federated_bundles().await? {
        known.insert(b.bundle.trust_domain.as_str().to_owned());
    }
    for r in state.ds.relationships().await? {
        known.insert(r.trust_domain.as_str().to_owned());
    }
    Ok(known)
}

fn refused(errors: &[PolicyError]) -> ApiError {
    ApiError::InvalidArgument(
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The ids of the policies in `req`, once it passed every check.
pub async fn validate(state: &ServerState, req: &Policy) -> Result<Vec<String>, ApiError> {
    if req.text.len() > MAX_POLICY_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "policy {:?} is {} bytes; at most {MAX_POLICY_BYTES}",
            req.name,
            req.text.len()
        )));
    }
    let known = known_trust_domains(state).await?;
    let policies = parse_source(&req.name, &req.text, Some(&known)).map_err(|e| refused(&e))?;
    Ok(policies.iter().map(|p| p.id().to_string()).collect())
}

/// The record to store for `req` (validated), at the server's time.
pub async fn record(
    state: &ServerState,
    req: &Policy,
) -> Result<(PolicyRecord, Vec<String>), ApiError> {
    let ids = validate(state, req).await?;
    let now = unix_seconds(state.ca.now());
    Ok((
        PolicyRecord {
            name: req.name.clone(),
            text: req.text.clone(),
            created_at: now,
            updated_at: now,
        },
        ids,
    ))
}

/// The stored source as the Admin API shows it, with its policies' ids
/// (a source stored before a schema change that no longer parses shows
/// none).
pub fn admin_policy(rec: &PolicyRecord) -> Policy {
    let ids = parse_source(&rec.name, &rec.text, None)
        .map(|ps| ps.iter().map(|p| p.id().to_string()).collect())
        .unwrap_or_default();
    Policy {
        name: rec.name.clone(),
        text: rec.text.clone(),
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        policy_ids: ids,
    }
}

impl super::AdminService {
    pub(super) async fn list_stored_policies(
        &self,
    ) -> Result<tonic::Response<ListPoliciesResponse>, tonic::Status> {
        let stored = self.state.ds.policies().await.map_err(ApiError::from)?;
        let policies = stored.iter().map(admin_policy).collect();
        Ok(tonic::Response::new(ListPoliciesResponse { policies }))
    }

    pub(super) async fn stored_policy(
        &self,
        name: &str,
    ) -> Result<tonic::Response<Policy>, tonic::Status> {
        match self.state.ds.policy(name).await.map_err(ApiError::from)? {
            Some(p) => Ok(tonic::Response::new(admin_policy(&p))),
            None => Err(ApiError::NotFound(format!("policy {name:?}")).into()),
        }
    }

    /// `policy validate`: the checks of `create`, nothing stored.
    pub(super) async fn check_policy(
        &self,
        req: Policy,
    ) -> Result<tonic::Response<Policy>, tonic::Status> {
        let policy_ids = validate(&self.state, &req).await?;
        Ok(tonic::Response::new(Policy { policy_ids, ..req }))
    }

    /// `policy create` (or `update` when `replace`): validated, stored,
    /// audited with the name and whether it was refused (never the text).
    pub(super) async fn write_policy(
        &self,
        request: tonic::Request<Policy>,
        replace: bool,
    ) -> Result<tonic::Response<Policy>, tonic::Status> {
        let caller = super::audit_caller(&request);
        let args = serde_json::json!({"name": request.get_ref().name});
        let res = async {
            let (record, _) = record(&self.state, request.get_ref()).await?;
            let stored = if replace {
                self.state.ds.update_policy(record).await?
            } else {
                self.state.ds.create_policy(record).await?
            };
            tracing::info!(name = %stored.name, replace, "authorization policy stored");
            Ok::<_, ApiError>(tonic::Response::new(admin_policy(&stored)))
        }
        .await
        .map_err(tonic::Status::from);
        let verb = if replace {
            "policy.update"
        } else {
            "policy.create"
        };
        self.audited(caller, verb, args, res).await
    }

    pub(super) async fn remove_policy(
        &self,
        request: tonic::Request<signet_proto::admin::PolicyRequest>,
    ) -> Result<tonic::Response<Policy>, tonic::Status> {
        let caller = super::audit_caller(&request);
        let name = request.into_inner().name;
        let args = serde_json::json!({ "name": name });
        let res = async {
            let gone = self.state.ds.delete_policy(&name).await?;
            tracing::info!(name = %gone.name, "authorization policy deleted");
            Ok::<_, ApiError>(tonic::Response::new(admin_policy(&gone)))
        }
        .await
        .map_err(tonic::Status::from);
        self.audited(caller, "policy.delete", args, res).await
    }
}
