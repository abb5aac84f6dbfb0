//! `authz_eval_p99_us`: one authorization decision in-process, as the
//! agent and services embedding `signet-authz` make it: 100 policies
//! (permits by SPIFFE ID with time-of-day and zone conditions, trust-domain
//! and prefix rules, forbids), requests from 150 principals (a third
//! matching nothing), each decision timed alone. Goal: p99 under 100 µs.

use std::time::Duration;

use signet_core::clock::{Clock, SystemClock};
use tokio::time::Instant;

use serde_json::json;
use signet_authz::{AuthzRequest, Engine, Policies, PolicySource, Principal};
use signet_core::SpiffeId;

use crate::report::Report;
use crate::stats::percentile_ms;

pub const POLICIES: usize = 100;

fn policy_text() -> String {
    let mut text = String::new();
    for i in 0..POLICIES - 4 {
        let action = ["read", "write", "delete"][i % 3];
        text.push_str(&format!(
            "permit(principal == Signet::Workload::\"spiffe://example.org/svc-{i}\", \
             action == Signet::Action::\"{action}\", resource) \
             when {{ context.time.toTime() >= duration(\"6h\") && \
                     context has zone && context.zone == \"zone-{}\" }};\n",
            i % 4
        ));
    }
    text.push_str(
        "permit(principal in Signet::TrustDomain::\"example.org\", action == Signet::Action::\"read\", resource) \
           when { principal.spiffe_id like \"spiffe://example.org/shared/*\" };\n\
         permit(principal, action == Signet::Action::\"read\", resource) when { context.federated && context.svid_remaining_secs > 60 };\n\
         forbid(principal, action == Signet::Action::\"delete\", resource) when { context has posture && context.posture == \"untrusted\" };\n\
         forbid(principal, action, resource) when { principal.selectors.contains(\"unix:uid:0\") };\n",
    );
    text
}

fn requests(n: usize) -> anyhow::Result<Vec<AuthzRequest>> {
    let now = SystemClock.now();
    (0..n)
        .map(|i| {
            let id = SpiffeId::parse(&format!("spiffe://example.org/svc-{}", i % 150))?;
            let mut principal = Principal::new(id);
            principal.selectors = vec!["unix:uid:1000".into(), "systemd:unit:svc.service".into()];
            Ok(AuthzRequest {
                principal,
                action: ["read", "write", "delete"][i % 3].into(),
                resource: format!("/orders/{i}"),
                time: now,
                source_address: Some("10.1.2.3".parse()?),
                federated: false,
                svid_remaining: Some(Duration::from_secs(1800)),
                attributes: json!({"zone": format!("zone-{}", i % 4)})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            })
        })
        .collect()
}

pub fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let policies = Policies::build(&[PolicySource {
        name: "bench".into(),
        text: policy_text(),
    }])
    .map_err(|e| anyhow::anyhow!("the bench policies do not validate: {e:?}"))?;
    anyhow::ensure!(policies.len() == POLICIES, "{} policies", policies.len());
    let engine = Engine::new(policies);
    let requests = requests(if quick { 3_000 } else { 30_000 })?;
    // Warm up (the first decisions pay for lazily built extension tables).
    for r in requests.iter().take(500) {
        engine.decide(r)?;
    }
    let mut samples = Vec::with_capacity(requests.len());
    let mut allowed = 0usize;
    for r in &requests {
        let start = Instant::now();
        let d = engine.decide(r)?;
        samples.push(start.elapsed());
        allowed += usize::from(d.allow);
    }
    anyhow::ensure!(
        allowed > 0 && allowed < requests.len(),
        "every decision alike ({allowed})"
    );
    report.add(
        "authz_eval_p50_us",
        percentile_ms(&mut samples, 50.0) * 1000.0,
        "us",
    );
    report.add(
        "authz_eval_p99_us",
        percentile_ms(&mut samples, 99.0) * 1000.0,
        "us",
    );
    Ok(())
}
