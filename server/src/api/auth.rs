//! Who is calling the Node API: the agent named by the verified TLS client
//! certificate, provided that certificate is not revoked and the agent's
//! record exists and is not banned. Checked on every call: a connection
//! outlives a revocation, an eviction or a ban.

use signet_core::x509::{cert_info, validate_x509_svid};
use signet_core::SpiffeId;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Request;

use super::status::ApiError;
use super::ServerState;
use crate::datastore::{AgentRecord, EntryFilter};

/// The calling agent's record, or `Unauthenticated` (no or invalid client
/// certificate) / `PermissionDenied` (revoked SVID; unknown, evicted or
/// banned agent).
pub async fn authenticate_agent<T>(
    state: &ServerState,
    request: &Request<T>,
) -> Result<AgentRecord, ApiError> {
    authenticate(state, request).await.map(|(agent, _)| agent)
}

/// Like [`authenticate_agent`], with the serial (lowercase hex) of the SVID
/// the agent presented, which a long-lived stream watches for revocation.
pub async fn authenticate<T>(
    state: &ServerState,
    request: &Request<T>,
) -> Result<(AgentRecord, String), ApiError> {
    let (id, serial) = verified_peer(state, request)?;
    if state.revocations.is_x509_revoked(&serial) {
        return Err(revoked_svid(&id, &serial));
    }
    let agent = state.ds.get_agent(&id).await?.ok_or_else(|| {
        ApiError::PermissionDenied(format!(
            "agent {id} is not attested (unknown or evicted); attest again"
        ))
    })?;
    if agent.banned {
        return Err(ApiError::PermissionDenied(format!("agent {id} is banned")));
    }
    state.last_seen.saw(
        &agent.spiffe_id,
        signet_core::clock::unix_seconds(state.ca.now()),
    );
    Ok((agent, serial))
}

/// A downstream server (`NewDownstreamX509CA`): its X509-SVID, not
/// revoked, names the SPIFFE ID of an entry marked `downstream`.
pub async fn authenticate_downstream<T>(
    state: &ServerState,
    request: &Request<T>,
) -> Result<SpiffeId, ApiError> {
    let (id, serial) = verified_peer(state, request)?;
    if state.revocations.is_x509_revoked(&serial) {
        return Err(ApiError::PermissionDenied(format!(
            "{id} presented a revoked SVID (serial {serial})"
        )));
    }
    let filter = EntryFilter {
        spiffe_id: Some(id.clone()),
        ..EntryFilter::default()
    };
    let entries = state.ds.list_entries(&filter).await?;
    if !entries.iter().any(|e| e.entry.downstream) {
        return Err(ApiError::PermissionDenied(format!(
            "{id} is not the SPIFFE ID of a downstream entry (entry create --downstream)"
        )));
    }
    Ok(id)
}

/// The SPIFFE ID and serial (lowercase hex) of the verified TLS client
/// certificate, checked against the bundle as it is now.
fn verified_peer<T>(
    state: &ServerState,
    request: &Request<T>,
) -> Result<(SpiffeId, String), ApiError> {
    let certs = peer_certs(request).ok_or_else(|| {
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
    let serial = chain
        .first()
        .map(|leaf| cert_info(leaf))
        .transpose()
        .map_err(|e| ApiError::Unauthenticated(format!("invalid client certificate: {e}")))?
        .map(|info| info.serial_hex)
        .unwrap_or_default();
    Ok((id, serial))
}

/// Said like an eviction: the agent drops what it holds and must attest
/// again (by itself where its method allows).
pub fn revoked_svid(id: &signet_core::SpiffeId, serial: &str) -> ApiError {
    ApiError::PermissionDenied(format!(
        "agent {id} presented a revoked SVID (serial {serial}); it is not attested any more: attest again"
    ))
}

/// The TLS client certificates of the connection `request` came on.
pub fn peer_certs<T>(
    request: &Request<T>,
) -> Option<std::sync::Arc<Vec<rustls_pki_types::CertificateDer<'static>>>> {
    request
        .extensions()
        .get::<signet_runtime::conn::ConnInfo<TlsConnectInfo<TcpConnectInfo>>>()
        .and_then(|info| info.peer.peer_certs())
}

/// The address the connection `request` came on is from.
pub fn peer_addr<T>(request: &Request<T>) -> Option<std::net::SocketAddr> {
    request
        .extensions()
        .get::<signet_runtime::conn::ConnInfo<TlsConnectInfo<TcpConnectInfo>>>()
        .and_then(|info| info.peer.get_ref().remote_addr())
        .or_else(|| request.remote_addr())
}
