//! One credential revoked until it would have expired anyway: published as
//! an event at once, and for an X.509-SVID in the CRLs that follow.

use signet_core::clock::unix_seconds;
use signet_proto::admin::RevokeResponse;
use tonic::Status;

use super::super::ServerState;
use crate::datastore::RevokedKind;

pub(super) async fn credential(
    state: &ServerState,
    kind: RevokedKind,
    id: &str,
    reason: &str,
) -> Result<RevokeResponse, Status> {
    let now = unix_seconds(state.ca.now());
    let rev = state.ds.revoke(kind, id, reason, now).await?;
    tracing::warn!(kind = kind.as_str(), id = %id, reason = %reason, expires_at = rev.expires_at, "credential revoked");
    // The revocation's event is out; the CRLs follow in their own
    // (signed here if the CA is ours, else by the server whose it is).
    if kind == RevokedKind::X509 {
        state.revocations.refresh().await?;
    }
    Ok(RevokeResponse {
        expires_at: rev.expires_at,
    })
}
