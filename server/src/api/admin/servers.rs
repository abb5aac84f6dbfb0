//! The servers sharing the datastore: listed with their authorities,
//! removed once gone for good.

use signet_proto::admin::{ListServersResponse, Server};
use tonic::Status;

use super::super::status::ApiError;
use super::super::ServerState;
use crate::ca::AuthorityKind;

/// Every server sharing the datastore, with how many authorities each has.
pub(super) async fn list(state: &ServerState) -> Result<ListServersResponse, Status> {
    let servers = state.ds.list_servers().await.map_err(ApiError::from)?;
    let x509 = state.ca.list(AuthorityKind::X509);
    let jwt = state.ca.list(AuthorityKind::Jwt);
    let count = |list: &[crate::ca::AuthorityInfo], id: &str| {
        u32::try_from(list.iter().filter(|a| a.server_id == id).count()).unwrap_or(u32::MAX)
    };
    Ok(ListServersResponse {
        servers: servers
            .iter()
            .map(|s| Server {
                id: s.id.clone(),
                hostname: s.hostname.clone(),
                address: s.address.clone(),
                started_at: s.started_at,
                last_seen: s.last_seen,
                x509_authorities: count(&x509, &s.id),
                jwt_authorities: count(&jwt, &s.id),
            })
            .collect(),
        self_id: state.server_id.clone(),
    })
}

/// Forgets a server that is gone for good (never the one answering).
pub(super) async fn remove(state: &ServerState, id: &str) -> Result<Server, Status> {
    let id = id.trim();
    if id.is_empty() {
        return Err(ApiError::InvalidArgument("id is required".into()).into());
    }
    if id == state.server_id {
        return Err(ApiError::FailedPrecondition(format!(
            "server {id} is the one answering; remove a server from another one, after stopping it"
        ))
        .into());
    }
    let s = state.ds.remove_server(id).await.map_err(ApiError::from)?;
    tracing::warn!(server_id = %s.id, hostname = %s.hostname, address = %s.address, "server removed; its authorities stay in the bundle until they expire");
    Ok(Server {
        id: s.id,
        hostname: s.hostname,
        address: s.address,
        started_at: s.started_at,
        last_seen: s.last_seen,
        x509_authorities: 0,
        jwt_authorities: 0,
    })
}
