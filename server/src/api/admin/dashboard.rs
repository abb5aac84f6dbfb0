//! CreateDashboardLogin: a one-time link to this server's dashboard.

use signet_proto::admin::DashboardLogin;

use super::super::status::ApiError;
use super::super::ServerState;
use crate::dashboard::access::LOGIN_TTL;

pub fn login(state: &ServerState) -> Result<DashboardLogin, ApiError> {
    let link = state.dashboard.as_ref().ok_or_else(|| {
        ApiError::FailedPrecondition(
            "the dashboard is off on this server: set [dashboard] bind in its config".into(),
        )
    })?;
    let code = link
        .access
        .issue_code()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let expires_at = signet_core::clock::unix_seconds(state.ca.now())
        + i64::try_from(LOGIN_TTL.as_secs()).unwrap_or(i64::MAX);
    Ok(DashboardLogin {
        url: format!("{}/ui/login?code={code}", link.base_url),
        expires_at,
    })
}
