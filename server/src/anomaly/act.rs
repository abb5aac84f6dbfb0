//! What a finding leads to: always a warning, the metric and an audit
//! record; then the configured action on the agent concerned (`throttle`:
//! its signing and minting cut to a tenth for `throttle_for`; `ban`: banned
//! as `agent ban` would). A finding with no agent (a source address, a
//! token) can only be logged.

use tokio::time::Instant;

use super::task::Context;
use super::Finding;
use crate::audit::Decision;
use crate::config::{AnomalyAction, AnomalySettings};
use crate::datastore::DataStore;

pub async fn act(ctx: &Context, ds: &dyn DataStore, settings: &AnomalySettings, f: Finding) {
    let configured = settings.actions.of(f.kind);
    let applied = match (configured, &f.agent) {
        (AnomalyAction::Throttle, Some(agent)) => {
            ctx.limits
                .throttle_agent(agent, Instant::now() + settings.throttle_for);
            "throttle"
        }
        (AnomalyAction::Ban, Some(agent)) => match ds.ban_agent(agent).await {
            Ok(_) => "ban",
            Err(e) => {
                tracing::error!(agent = %agent, error = %e, "banning the agent of an anomaly failed");
                "log"
            }
        },
        _ => "log",
    };
    ctx.metrics.anomaly(f.kind.name());
    tracing::warn!(
        kind = f.kind.name(),
        subject = %f.subject,
        agent = ?f.agent.as_ref().map(ToString::to_string),
        detail = %f.detail,
        action = applied,
        "anomaly"
    );
    let decision = Decision::Anomaly {
        anomaly: f.kind.name().to_owned(),
        subject: f.subject,
        detail: f.detail,
        action: applied.to_owned(),
    };
    // Errors are logged by the auditor; detection goes on.
    let _ = ctx.audit.append(decision).await;
}
