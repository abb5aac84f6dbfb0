//! SVIDs minted through the Admin API, outside any agent: a JWT-SVID for a
//! workload ID of this trust domain, and an X.509-SVID for a CSR whose key
//! stays with the caller. Both are recorded (so they can be revoked) before
//! they are handed out.

use signet_core::clock::unix_seconds;
use signet_core::x509::parse_csr;
use signet_proto::admin::{
    MintJwtSvidRequest, MintJwtSvidResponse, MintX509SvidRequest, MintX509SvidResponse,
};
use tonic::Status;

use super::super::status::ApiError;
use super::super::validate::{
    check_audience, dns_name, not_reserved, requested_ttl, workload_id_in,
};
use super::super::ServerState;

pub(super) async fn jwt(
    state: &ServerState,
    req: &MintJwtSvidRequest,
) -> Result<MintJwtSvidResponse, Status> {
    let td = state.ca.trust_domain();
    let id = workload_id_in("spiffe_id", &req.spiffe_id, td)?;
    check_audience(&req.audience)?;
    let ttl = requested_ttl(req.ttl)?;
    let minted = state.ca.mint_jwt_svid(&id, &req.audience, ttl)?;
    state
        .ds
        .record_jwt(&minted.jti, &id, &minted.kid, minted.expires_at())
        .await?;
    tracing::info!(
        spiffe_id = %id,
        audiences = req.audience.len(),
        expires_at = minted.expires_at(),
        "issued JWT-SVID through the Admin API"
    );
    Ok(MintJwtSvidResponse {
        issued_at: minted.issued_at(),
        expires_at: minted.expires_at(),
        token: minted.svid.token,
    })
}

pub(super) async fn x509(
    state: &ServerState,
    req: &MintX509SvidRequest,
) -> Result<MintX509SvidResponse, Status> {
    let csr =
        parse_csr(&req.csr).map_err(|e| ApiError::InvalidArgument(format!("invalid CSR: {e}")))?;
    let td = state.ca.trust_domain();
    if !csr.spiffe_id.is_member_of(td) {
        return Err(ApiError::InvalidArgument(format!(
            "CSR SPIFFE ID {} is not in the server's trust domain {td:?}",
            csr.spiffe_id
        ))
        .into());
    }
    let spiffe_id = not_reserved("CSR SPIFFE ID", csr.spiffe_id)?;
    let dns_names = req
        .dns_names
        .iter()
        .map(|d| dns_name(d))
        .collect::<Result<Vec<_>, _>>()?;
    let ttl = requested_ttl(req.ttl)?;
    let svid = state
        .ca
        .issue_x509_svid(&spiffe_id, &csr.public_key, &dns_names, ttl)?;
    state
        .ds
        .record_x509(
            &svid.serial_hex,
            &spiffe_id,
            &svid.authority_id,
            unix_seconds(svid.not_after),
        )
        .await?;
    tracing::info!(
        spiffe_id = %spiffe_id,
        serial = %svid.serial_hex,
        not_after = unix_seconds(svid.not_after),
        "issued X.509-SVID through the Admin API"
    );
    Ok(MintX509SvidResponse {
        svid_chain: svid.chain,
        bundle: state.ca.bundle().x509_authorities,
    })
}
