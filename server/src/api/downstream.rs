//! `NewDownstreamX509CA`: a downstream Signet server (an edge site, its
//! `[upstream_authority.signet]` pointing here) gets its X.509 CA signed,
//! so its workloads chain to this trust domain's roots.

use std::time::Duration;

use signet_core::clock::unix_seconds;
use signet_core::x509::cert_info;
use signet_proto::node::{NewDownstreamX509caRequest, NewDownstreamX509caResponse};
use tonic::{Request, Status};

use super::auth::authenticate_downstream;
use super::status::ApiError;
use super::ServerState;
use crate::audit::Decision;
use crate::ca::{authority_id, csr_public_key};

pub async fn new_downstream_ca(
    state: &ServerState,
    request: Request<NewDownstreamX509caRequest>,
) -> Result<NewDownstreamX509caResponse, Status> {
    let id = authenticate_downstream(state, &request).await?;
    state.limits.x509_signing(&id, 1)?;
    let req = request.into_inner();
    let key = csr_public_key(&req.csr)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid CSR: {e}")))?;
    let ttl = (req.ttl != 0).then(|| Duration::from_secs(req.ttl.into()));
    let signed = state
        .ca
        .sign_downstream_ca(&id, &key, ttl)
        .map_err(ApiError::from)?;
    let Some(ca) = signed.chain.first() else {
        return Err(ApiError::Internal("the signed CA chain is empty".into()).into());
    };
    let not_after = unix_seconds(
        cert_info(ca)
            .map_err(|e| ApiError::Internal(format!("the signed CA: {e}")))?
            .not_after,
    );
    let ca_id = authority_id(ca);
    state
        .audit
        .append(Decision::DownstreamCa {
            spiffe_id: id.to_string(),
            authority_id: ca_id.clone(),
            not_after,
        })
        .await
        .map_err(ApiError::from)?;
    tracing::info!(downstream = %id, authority_id = %ca_id, not_after, "signed a downstream CA");
    Ok(NewDownstreamX509caResponse {
        ca_chain: signed.chain,
        x509_authorities: signed.roots,
    })
}
