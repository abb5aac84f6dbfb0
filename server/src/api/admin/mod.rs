//! The Admin API (CLI, over the admin Unix socket): join tokens, entries,
//! agents, the bundle, SVIDs minted outside any agent, health, and the
//! servers sharing the datastore; federation in `federation`. Every
//! change is published on the change bus so connected agents hear of it at
//! once.

mod agents;
mod audited;
mod authorities;
mod dashboard;
pub(crate) mod federation;
mod mint;
mod policies;
mod revoke;
mod servers;
mod tokens;

use serde_json::json;
use signet_core::clock::unix_seconds;
use signet_proto::admin::admin_server::Admin;
use signet_proto::admin::{
    Agent, AgentRequest, Authority, AuthorityKindRequest, AuthorityRequest,
    BatchCreateEntryRequest, BatchCreateEntryResponse, CountEntriesRequest, CountEntriesResponse,
    CreateJoinTokenRequest, CreateJoinTokenResponse, DeleteEntryRequest, DeleteEntryResponse,
    Entry, GetBundleRequest, GetBundleResponse, HealthRequest, HealthResponse,
    IntrospectJwtSvidRequest, IntrospectJwtSvidResponse, ListAgentsRequest, ListAgentsResponse,
    ListAuthoritiesResponse, ListEntriesRequest, ListEntriesResponse, ListServersRequest,
    ListServersResponse, MintJwtSvidRequest, MintJwtSvidResponse, MintX509SvidRequest,
    MintX509SvidResponse, RemoveServerRequest, RevokeJwtSvidRequest, RevokeResponse,
    RevokeX509SvidRequest, Server,
};
use signet_proto::admin::{CreateDashboardLoginRequest, DashboardLogin};
use signet_proto::admin::{
    FederatedBundle, FederationRelationship, ListFederatedBundlesRequest,
    ListFederatedBundlesResponse, ListFederationRelationshipsRequest,
    ListFederationRelationshipsResponse, SetFederatedBundleRequest, TrustDomainRequest,
    UpdateEntryRequest,
};
use signet_proto::admin::{ListPoliciesRequest, ListPoliciesResponse, Policy, PolicyRequest};
use tonic::{Request, Response, Status};

use audited::{audit_caller, csr_spiffe_id};
use authorities::Transition;

use super::convert::{admin_agent, admin_authority, admin_bundle, admin_entry};
use super::entry_create;
use super::introspect::introspect;
use super::status::ApiError;
use super::validate::{optional_id, parse_agent_id, selector};
use super::ServerState;
use crate::ca::AuthorityKind;
use crate::datastore::{EntryFilter, RevokedKind};
use crate::revocation::normalize_serial;
use signet_core::jwt::parse_unverified;

pub struct AdminService {
    state: ServerState,
}

impl AdminService {
    pub fn new(state: ServerState) -> Self {
        Self { state }
    }
}

fn authority_kind(kind: i32) -> Result<AuthorityKind, ApiError> {
    match signet_proto::admin::AuthorityKind::try_from(kind) {
        Ok(signet_proto::admin::AuthorityKind::X509) => Ok(AuthorityKind::X509),
        Ok(signet_proto::admin::AuthorityKind::Jwt) => Ok(AuthorityKind::Jwt),
        _ => Err(ApiError::InvalidArgument(
            "authority kind must be X509 or JWT".into(),
        )),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_join_token(
        &self,
        request: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<CreateJoinTokenResponse>, Status> {
        let caller = audit_caller(&request);
        // The ttl only: the token itself is a secret until it is used.
        let args = json!({"ttl_s": request.get_ref().ttl});
        let res = tokens::generate(&self.state, request.get_ref().ttl)
            .await
            .map(Response::new);
        self.audited(caller, "token.generate", args, res).await
    }

    async fn create_entry(&self, request: Request<Entry>) -> Result<Response<Entry>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"spiffe_id": request.get_ref().spiffe_id, "parent_id": request.get_ref().parent_id, "selectors": request.get_ref().selectors});
        let res: Result<Response<Entry>, Status> = async move {
            let entry = entry_create::create_one(&self.state, request.get_ref()).await?;
            Ok(Response::new(entry))
        }
        .await;
        self.audited(caller, "entry.create", args, res).await
    }

    async fn batch_create_entry(
        &self,
        request: Request<BatchCreateEntryRequest>,
    ) -> Result<Response<BatchCreateEntryResponse>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"spiffe_ids": request.get_ref().entries.iter().map(|e| e.spiffe_id.as_str()).collect::<Vec<_>>()});
        let res: Result<Response<BatchCreateEntryResponse>, Status> = async move {
            let results =
                entry_create::create_batch(&self.state, &request.get_ref().entries).await?;
            Ok(Response::new(BatchCreateEntryResponse { results }))
        }
        .await;
        self.audited(caller, "entry.batch_create", args, res).await
    }

    async fn list_entries(
        &self,
        request: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        let req = request.get_ref();
        let filter = EntryFilter {
            spiffe_id: optional_id("spiffe_id", &req.spiffe_id)?,
            parent_id: optional_id("parent_id", &req.parent_id)?,
            selectors: req
                .selectors
                .iter()
                .map(|s| selector(s))
                .collect::<Result<_, _>>()?,
            node: None,
        };
        let entries = self.state.ds.list_entries(&filter).await?;
        Ok(Response::new(ListEntriesResponse {
            entries: entries.iter().map(admin_entry).collect(),
        }))
    }

    async fn delete_entry(
        &self,
        request: Request<DeleteEntryRequest>,
    ) -> Result<Response<DeleteEntryResponse>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"id": request.get_ref().id});
        let res: Result<Response<DeleteEntryResponse>, Status> = async move {
            let id = &request.get_ref().id;
            if id.is_empty() {
                return Err(ApiError::InvalidArgument("entry id is required".into()).into());
            }
            let rec = self.state.ds.delete_entry(id).await?;
            tracing::info!(entry_id = %id, spiffe_id = %rec.entry.spiffe_id, "entry deleted");
            Ok(Response::new(DeleteEntryResponse {}))
        }
        .await;
        self.audited(caller, "entry.delete", args, res).await
    }

    async fn count_entries(
        &self,
        _request: Request<CountEntriesRequest>,
    ) -> Result<Response<CountEntriesResponse>, Status> {
        let count = self.state.ds.count_entries().await?;
        Ok(Response::new(CountEntriesResponse { count }))
    }

    async fn list_agents(
        &self,
        _request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        let agents = self.state.ds.list_agents().await?;
        Ok(Response::new(ListAgentsResponse {
            agents: agents.iter().map(admin_agent).collect(),
        }))
    }

    async fn get_agent(&self, request: Request<AgentRequest>) -> Result<Response<Agent>, Status> {
        let id = parse_agent_id(&request.get_ref().spiffe_id)?;
        let agent = self
            .state
            .ds
            .get_agent(&id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("agent {id} not found")))?;
        Ok(Response::new(admin_agent(&agent)))
    }

    async fn evict_agent(&self, request: Request<AgentRequest>) -> Result<Response<Agent>, Status> {
        self.end_agent(request, false).await
    }

    async fn ban_agent(&self, request: Request<AgentRequest>) -> Result<Response<Agent>, Status> {
        self.end_agent(request, true).await
    }

    async fn get_bundle(
        &self,
        _request: Request<GetBundleRequest>,
    ) -> Result<Response<GetBundleResponse>, Status> {
        Ok(Response::new(admin_bundle(&self.state.ca.bundle())))
    }

    async fn mint_jwt_svid(
        &self,
        request: Request<MintJwtSvidRequest>,
    ) -> Result<Response<MintJwtSvidResponse>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"spiffe_id": request.get_ref().spiffe_id, "audience": request.get_ref().audience, "ttl_s": request.get_ref().ttl});
        let res: Result<Response<MintJwtSvidResponse>, Status> =
            mint::jwt(&self.state, request.get_ref())
                .await
                .map(Response::new);
        self.audited(caller, "jwt.mint", args, res).await
    }

    async fn mint_x509_svid(
        &self,
        request: Request<MintX509SvidRequest>,
    ) -> Result<Response<MintX509SvidResponse>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"spiffe_id": csr_spiffe_id(&request.get_ref().csr), "ttl_s": request.get_ref().ttl});
        let res: Result<Response<MintX509SvidResponse>, Status> =
            mint::x509(&self.state, request.get_ref())
                .await
                .map(Response::new);
        self.audited(caller, "x509.mint", args, res).await
    }

    async fn health(
        &self,
        _request: Request<HealthRequest>,
    ) -> Result<Response<HealthResponse>, Status> {
        // Serving means the datastore answers and the CA can still sign.
        let db_ok = self.state.ds.ping().await.is_ok();
        let ca_ok = self.state.ca.not_after() > self.state.ca.now();
        Ok(Response::new(HealthResponse {
            serving: db_ok && ca_ok,
            warning: self.state.ca.warning().unwrap_or_default(),
        }))
    }

    async fn list_authorities(
        &self,
        request: Request<AuthorityKindRequest>,
    ) -> Result<Response<ListAuthoritiesResponse>, Status> {
        let kind = authority_kind(request.get_ref().kind)?;
        Ok(Response::new(ListAuthoritiesResponse {
            authorities: self
                .state
                .ca
                .list(kind)
                .iter()
                .map(admin_authority)
                .collect(),
        }))
    }

    async fn prepare_authority(
        &self,
        request: Request<AuthorityKindRequest>,
    ) -> Result<Response<Authority>, Status> {
        let kind = request.get_ref().kind;
        self.authority_transition(&request, kind, None, Transition::Prepare)
            .await
    }

    async fn activate_authority(
        &self,
        request: Request<AuthorityKindRequest>,
    ) -> Result<Response<Authority>, Status> {
        let kind = request.get_ref().kind;
        self.authority_transition(&request, kind, None, Transition::Activate)
            .await
    }

    async fn taint_authority(
        &self,
        request: Request<AuthorityRequest>,
    ) -> Result<Response<Authority>, Status> {
        let r = request.get_ref();
        let (kind, id) = (r.kind, r.id.clone());
        self.authority_transition(&request, kind, Some(&id), Transition::Taint)
            .await
    }

    async fn revoke_authority(
        &self,
        request: Request<AuthorityRequest>,
    ) -> Result<Response<Authority>, Status> {
        let r = request.get_ref();
        let (kind, id) = (r.kind, r.id.clone());
        self.authority_transition(&request, kind, Some(&id), Transition::Revoke)
            .await
    }

    async fn revoke_x509_svid(
        &self,
        request: Request<RevokeX509SvidRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"serial": request.get_ref().serial, "reason": request.get_ref().reason});
        let res: Result<Response<RevokeResponse>, Status> = async move {
            let req = request.get_ref();
            let serial = normalize_serial(&req.serial).ok_or_else(|| {
                ApiError::InvalidArgument(format!("invalid serial {:?}: expected hex", req.serial))
            })?;
            revoke::credential(&self.state, RevokedKind::X509, &serial, &req.reason)
                .await
                .map(Response::new)
        }
        .await;
        self.audited(caller, "revoke.x509", args, res).await
    }

    async fn revoke_jwt_svid(
        &self,
        request: Request<RevokeJwtSvidRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"jti": request.get_ref().jti, "reason": request.get_ref().reason});
        let res: Result<Response<RevokeResponse>, Status> = async move {
            let req = request.get_ref();
            let jti = req.jti.trim();
            if jti.is_empty() {
                return Err(ApiError::InvalidArgument("jti is required".into()).into());
            }
            revoke::credential(&self.state, RevokedKind::Jwt, jti, &req.reason)
                .await
                .map(Response::new)
        }
        .await;
        self.audited(caller, "revoke.jwt", args, res).await
    }

    async fn introspect_jwt_svid(
        &self,
        request: Request<IntrospectJwtSvidRequest>,
    ) -> Result<Response<IntrospectJwtSvidResponse>, Status> {
        let req = request.get_ref();
        let revoked = match parse_unverified(req.token.trim()) {
            Ok((_, claims)) => match claims.get("jti").and_then(|v| v.as_str()) {
                Some(jti) => self
                    .state
                    .ds
                    .revocations(unix_seconds(self.state.ca.now()))
                    .await?
                    .iter()
                    .any(|r| r.kind == RevokedKind::Jwt && r.id == jti),
                None => false,
            },
            Err(_) => false,
        };
        Ok(Response::new(introspect(
            req.token.trim(),
            &req.audience,
            &self.state.ca.jwt_bundles(),
            self.state.ca.now(),
            revoked,
        )))
    }

    async fn list_servers(
        &self,
        _request: Request<ListServersRequest>,
    ) -> Result<Response<ListServersResponse>, Status> {
        servers::list(&self.state).await.map(Response::new)
    }

    async fn create_dashboard_login(
        &self,
        request: Request<CreateDashboardLoginRequest>,
    ) -> Result<Response<DashboardLogin>, Status> {
        let caller = audit_caller(&request);
        // The code is a credential: neither the record nor the log holds it.
        let res = dashboard::login(&self.state)
            .map(Response::new)
            .map_err(Status::from);
        self.audited(caller, "dashboard.login", json!({}), res)
            .await
    }

    async fn create_policy(&self, request: Request<Policy>) -> Result<Response<Policy>, Status> {
        self.write_policy(request, false).await
    }

    async fn update_policy(&self, request: Request<Policy>) -> Result<Response<Policy>, Status> {
        self.write_policy(request, true).await
    }

    async fn list_policies(
        &self,
        _request: Request<ListPoliciesRequest>,
    ) -> Result<Response<ListPoliciesResponse>, Status> {
        self.list_stored_policies().await
    }

    async fn get_policy(
        &self,
        request: Request<PolicyRequest>,
    ) -> Result<Response<Policy>, Status> {
        self.stored_policy(&request.get_ref().name).await
    }

    async fn delete_policy(
        &self,
        request: Request<PolicyRequest>,
    ) -> Result<Response<Policy>, Status> {
        self.remove_policy(request).await
    }

    async fn validate_policy(&self, request: Request<Policy>) -> Result<Response<Policy>, Status> {
        self.check_policy(request.into_inner()).await
    }

    async fn remove_server(
        &self,
        request: Request<RemoveServerRequest>,
    ) -> Result<Response<Server>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"id": request.get_ref().id});
        let res = servers::remove(&self.state, &request.get_ref().id)
            .await
            .map(Response::new);
        self.audited(caller, "server.remove", args, res).await
    }

    async fn update_entry(
        &self,
        request: Request<UpdateEntryRequest>,
    ) -> Result<Response<Entry>, Status> {
        let caller = audit_caller(&request);
        let args =
            json!({"id": request.get_ref().id, "federates_with": request.get_ref().federates_with});
        let res: Result<Response<Entry>, Status> = async move {
            Ok(Response::new(
                federation::update_entry(&self.state, request.get_ref()).await?,
            ))
        }
        .await;
        self.audited(caller, "entry.update", args, res).await
    }

    async fn set_federated_bundle(
        &self,
        request: Request<SetFederatedBundleRequest>,
    ) -> Result<Response<FederatedBundle>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"trust_domain": request.get_ref().trust_domain, "format": request.get_ref().format});
        let res: Result<Response<FederatedBundle>, Status> = async move {
            Ok(Response::new(
                federation::set_bundle(&self.state, request.get_ref()).await?,
            ))
        }
        .await;
        self.audited(caller, "bundle.set", args, res).await
    }

    async fn list_federated_bundles(
        &self,
        _request: Request<ListFederatedBundlesRequest>,
    ) -> Result<Response<ListFederatedBundlesResponse>, Status> {
        let bundles = self.state.ds.federated_bundles().await?;
        Ok(Response::new(ListFederatedBundlesResponse {
            bundles: bundles
                .iter()
                .map(federation::admin_federated_bundle)
                .collect(),
        }))
    }

    async fn get_federated_bundle(
        &self,
        request: Request<TrustDomainRequest>,
    ) -> Result<Response<FederatedBundle>, Status> {
        Ok(Response::new(
            federation::get_bundle(&self.state, request.get_ref()).await?,
        ))
    }

    async fn delete_federated_bundle(
        &self,
        request: Request<TrustDomainRequest>,
    ) -> Result<Response<FederatedBundle>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"trust_domain": request.get_ref().trust_domain});
        let res: Result<Response<FederatedBundle>, Status> = async move {
            Ok(Response::new(
                federation::delete_bundle(&self.state, request.get_ref()).await?,
            ))
        }
        .await;
        self.audited(caller, "bundle.delete", args, res).await
    }

    async fn create_federation_relationship(
        &self,
        request: Request<FederationRelationship>,
    ) -> Result<Response<FederationRelationship>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"trust_domain": request.get_ref().trust_domain, "bundle_endpoint_url": request.get_ref().bundle_endpoint_url, "profile": request.get_ref().profile});
        let res: Result<Response<FederationRelationship>, Status> = async move {
            let (rel, bootstrap) = federation::relationship_from(&self.state, request.get_ref())?;
            let created = self.state.ds.create_relationship(rel, bootstrap).await?;
            tracing::info!(trust_domain = %created.trust_domain, endpoint = %created.bundle_endpoint_url, profile = created.profile.name(), "federation relationship created");
            Ok(Response::new(
                federation::admin_relationship(&self.state, &created).await?,
            ))
        }
        .await;
        self.audited(caller, "federation.create", args, res).await
    }

    async fn list_federation_relationships(
        &self,
        _request: Request<ListFederationRelationshipsRequest>,
    ) -> Result<Response<ListFederationRelationshipsResponse>, Status> {
        let mut relationships = Vec::new();
        for rel in self.state.ds.relationships().await? {
            relationships.push(federation::admin_relationship(&self.state, &rel).await?);
        }
        Ok(Response::new(ListFederationRelationshipsResponse {
            relationships,
        }))
    }

    async fn get_federation_relationship(
        &self,
        request: Request<TrustDomainRequest>,
    ) -> Result<Response<FederationRelationship>, Status> {
        let td = federation::peer_trust_domain(&self.state, &request.get_ref().trust_domain)?;
        let rel =
            self.state.ds.relationship(&td).await?.ok_or_else(|| {
                ApiError::NotFound(format!("no federation relationship with {td}"))
            })?;
        Ok(Response::new(
            federation::admin_relationship(&self.state, &rel).await?,
        ))
    }

    async fn update_federation_relationship(
        &self,
        request: Request<FederationRelationship>,
    ) -> Result<Response<FederationRelationship>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"trust_domain": request.get_ref().trust_domain, "bundle_endpoint_url": request.get_ref().bundle_endpoint_url, "profile": request.get_ref().profile});
        let res: Result<Response<FederationRelationship>, Status> = async move {
            let (rel, bootstrap) = federation::relationship_from(&self.state, request.get_ref())?;
            if let Some(bundle) = bootstrap {
                // A new first-contact bundle replaces what is held.
                self.state.ds.set_federated_bundle(bundle, false).await?;
            }
            let updated = self.state.ds.update_relationship(rel).await?;
            tracing::info!(trust_domain = %updated.trust_domain, endpoint = %updated.bundle_endpoint_url, profile = updated.profile.name(), "federation relationship updated");
            Ok(Response::new(
                federation::admin_relationship(&self.state, &updated).await?,
            ))
        }
        .await;
        self.audited(caller, "federation.update", args, res).await
    }

    async fn delete_federation_relationship(
        &self,
        request: Request<TrustDomainRequest>,
    ) -> Result<Response<FederationRelationship>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"trust_domain": request.get_ref().trust_domain});
        let res: Result<Response<FederationRelationship>, Status> = async move {
            let td = federation::peer_trust_domain(&self.state, &request.get_ref().trust_domain)?;
            let gone = self.state.ds.delete_relationship(&td).await?;
            tracing::info!(trust_domain = %td, "federation relationship deleted; its bundle stays until `bundle delete`");
            Ok(Response::new(
                federation::admin_relationship(&self.state, &gone).await?,
            ))
        }
        .await;
        self.audited(caller, "federation.delete", args, res).await
    }

    async fn refresh_federation_relationship(
        &self,
        request: Request<TrustDomainRequest>,
    ) -> Result<Response<FederatedBundle>, Status> {
        let caller = audit_caller(&request);
        let args = json!({"trust_domain": request.get_ref().trust_domain});
        let res: Result<Response<FederatedBundle>, Status> = async move {
            let td = federation::peer_trust_domain(&self.state, &request.get_ref().trust_domain)?;
            let held = self.state.federation.refresh(td).await?;
            Ok(Response::new(federation::admin_federated_bundle(&held)))
        }
        .await;
        self.audited(caller, "federation.refresh", args, res).await
    }
}
