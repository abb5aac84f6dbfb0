//! Who is calling the Node API: the agent named by the verified TLS client
//! certificate, provided its record exists and is not banned.

use signet_core::x509::validate_x509_svid;
use tonic::Request;

use super::status::ApiError;
use super::ServerState;
use crate::datastore::AgentRecord;

/// The calling agent's record, or `Unauthenticated` (no or invalid client
/// certificate) / `PermissionDenied` (unknown, evicted or banned agent).
pub async fn authenticate_agent<T>(
    state: &ServerState,
    request: &Request<T>,
) -> Result<AgentRecord, ApiError> {
    let certs = request.peer_certs().ok_or_else(|| {
        ApiError::Unauthenticated(
            "this RPC requires the agent's X.509-SVID as TLS client certificate".into(),
        )
    })?;
    let chain: Vec<Vec<u8>> = certs.iter().map(|c| c.as_ref().to_vec()).collect();
    if chain.is_empty() {
        return Err(ApiError::Unauthenticated(
            "this RPC requires the agent's X.509-SVID as TLS client certificate".into(),
        ));
    }
    // The TLS layer checked the chain at handshake time; check again against
    // the bundle as it is now, since a connection can outlive a CA.
    let id = validate_x509_svid(&chain, &state.ca.bundle().x509_authorities, state.ca.now())
        .map_err(|e| ApiError::Unauthenticated(format!("invalid client certificate: {e}")))?;
    let agent = state.ds.get_agent(&id).await?.ok_or_else(|| {
        ApiError::PermissionDenied(format!(
            "agent {id} is not attested (unknown or evicted); attest again"
        ))
    })?;
    if agent.banned {
        return Err(ApiError::PermissionDenied(format!("agent {id} is banned")));
    }
    Ok(agent)
}
