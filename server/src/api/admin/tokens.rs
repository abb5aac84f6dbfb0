//! Join tokens: one-time secrets for node attestation, bounded in life.

use std::time::Duration;

use signet_proto::admin::CreateJoinTokenResponse;
use tonic::Status;

use super::super::status::ApiError;
use super::super::ServerState;

/// A new token living `ttl_s` seconds (0: the configured default).
pub(super) async fn generate(
    state: &ServerState,
    ttl_s: u32,
) -> Result<CreateJoinTokenResponse, Status> {
    let ttl = match ttl_s {
        0 => state.join_token_ttl,
        s => Duration::from_secs(u64::from(s)),
    };
    let max = crate::config::MAX_JOIN_TOKEN_TTL;
    if ttl > max {
        return Err(ApiError::InvalidArgument(format!(
            "ttl of {}s is above the limit of {}s for a join token",
            ttl.as_secs(),
            max.as_secs()
        ))
        .into());
    }
    let (token, expires_at) = state.join_tokens.generate(ttl).await?;
    tracing::info!(expires_at, "join token created");
    Ok(CreateJoinTokenResponse { token, expires_at })
}
