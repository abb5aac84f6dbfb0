//! The decisions the issue names, on hand-written policies.

use std::time::{Duration, SystemTime};

use serde_json::json;
use signet_core::SpiffeId;

use super::*;
use crate::policies::PolicySource;
use crate::request::Principal;

const POLICIES: &str = r#"
// Billing reads orders during office hours (UTC), from the internal zone.
@id("office-hours")
permit(
  principal == Signet::Workload::"spiffe://example.org/billing",
  action == Signet::Action::"read",
  resource
) when {
  context.time.toTime() >= duration("9h") &&
  context.time.toTime() < duration("17h") &&
  context has zone && context.zone == "internal"
};

// The partner's workloads may read, only read.
@id("partner-read")
permit(
  principal in Signet::TrustDomain::"partner.test",
  action == Signet::Action::"read",
  resource
) when { context.federated };

// Writers write from 10.0.0.0/8.
@id("writers")
permit(principal, action == Signet::Action::"write", resource)
when {
  principal.spiffe_id like "spiffe://example.org/writer/*" &&
  context has source_address && context.source_address.isInRange(ip("10.0.0.0/8"))
};

// Nothing with an SVID about to expire.
@id("fresh-svids")
forbid(principal, action, resource) when { context.svid_remaining_secs < 10 };
"#;

fn engine() -> Engine {
    Engine::new(
        Policies::build(&[PolicySource {
            name: "orders".into(),
            text: POLICIES.into(),
        }])
        .unwrap(),
    )
}

/// 2026-12-06 at `hour`:30 UTC.
fn at(hour: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_515_200 + hour * 3600 + 1800)
}

fn ask(id: &str, action: &str, hour: u64, attributes: serde_json::Value) -> AuthzRequest {
    let principal = Principal::new(SpiffeId::parse(id).unwrap());
    AuthzRequest {
        federated: !id.starts_with("spiffe://example.org"),
        principal,
        action: action.into(),
        resource: "/orders/42".into(),
        time: at(hour),
        source_address: None,
        svid_remaining: Some(Duration::from_secs(3000)),
        attributes: attributes.as_object().cloned().unwrap_or_default(),
    }
}

#[test]
fn time_of_day_and_network_zone_decide_together() {
    let e = engine();
    let billing = "spiffe://example.org/billing";
    let inside = json!({"zone": "internal"});
    let d = e.decide(&ask(billing, "read", 10, inside.clone())).unwrap();
    assert!(d.allow, "{d:?}");
    assert_eq!(d.policies, ["orders/office-hours"]);
    assert!(
        !e.decide(&ask(billing, "read", 20, inside)).unwrap().allow,
        "after hours"
    );
    assert!(
        !e.decide(&ask(billing, "read", 10, json!({"zone": "dmz"})))
            .unwrap()
            .allow,
        "another zone"
    );
    let d = e.decide(&ask(billing, "read", 10, json!({}))).unwrap();
    assert!(
        !d.allow && d.policies.is_empty(),
        "no zone: denied by default"
    );
}

#[test]
fn a_federated_principal_reads_and_its_escalation_to_write_is_denied() {
    let e = engine();
    let partner = "spiffe://partner.test/reporting";
    assert!(e.decide(&ask(partner, "read", 3, json!({}))).unwrap().allow);
    let d = e.decide(&ask(partner, "write", 3, json!({}))).unwrap();
    assert!(!d.allow);
    assert!(d.policies.is_empty(), "no policy permits it: {d:?}");
    // Not through federation: the same ID is not trusted to read.
    let mut local = ask(partner, "read", 3, json!({}));
    local.federated = false;
    assert!(!e.decide(&local).unwrap().allow);
}

#[test]
fn addresses_ranges_and_a_forbid_that_overrides() {
    let e = engine();
    let mut w = ask("spiffe://example.org/writer/7", "write", 12, json!({}));
    assert!(!e.decide(&w).unwrap().allow, "no source address");
    w.source_address = Some("10.2.3.4".parse().unwrap());
    assert!(e.decide(&w).unwrap().allow);
    w.source_address = Some("192.168.1.1".parse().unwrap());
    assert!(!e.decide(&w).unwrap().allow);
    w.source_address = Some("10.2.3.4".parse().unwrap());
    w.svid_remaining = Some(Duration::from_secs(5));
    let d = e.decide(&w).unwrap();
    assert!(!d.allow);
    assert_eq!(d.policies, ["orders/fresh-svids"], "the forbid decided");
}

#[test]
fn bad_requests_are_refused_precisely() {
    let e = engine();
    let billing = "spiffe://example.org/billing";
    assert_eq!(
        e.decide(&ask(billing, "fly", 10, json!({}))).unwrap_err(),
        RequestError::Action("fly".into())
    );
    assert_eq!(
        e.decide(&ask(billing, "read", 10, json!({"federated": true})))
            .unwrap_err(),
        RequestError::Computed("federated".into())
    );
    let err = e
        .decide(&ask(billing, "read", 10, json!({"zone": 7})))
        .unwrap_err();
    assert!(matches!(err, RequestError::Context(_)), "{err}");
    let err = e
        .decide(&ask(billing, "read", 10, json!({"shoe_size": 44})))
        .unwrap_err();
    assert!(err.to_string().contains("shoe_size"), "{err}");
}

#[test]
fn no_policy_means_deny() {
    let d = Engine::default()
        .decide(&ask("spiffe://example.org/x", "read", 10, json!({})))
        .unwrap();
    assert!(!d.allow);
}

#[test]
fn decisions_are_cached_only_when_no_policy_reads_the_time_or_svid_lifetime() {
    assert!(!engine().caches(), "the orders policies read the time");
    let build = |text: &str| {
        Engine::new(
            Policies::build(&[PolicySource {
                name: "p".into(),
                text: text.into(),
            }])
            .unwrap(),
        )
    };
    let zone = build(
        "permit(principal, action == Signet::Action::\"read\", resource) \
         when { context has zone && context.zone == \"internal\" };",
    );
    assert!(zone.caches());
    let inside = ask(
        "spiffe://example.org/a",
        "read",
        3,
        json!({"zone": "internal"}),
    );
    let outside = ask("spiffe://example.org/a", "read", 3, json!({"zone": "dmz"}));
    for _ in 0..2 {
        assert!(zone.decide(&inside).unwrap().allow);
        assert!(!zone.decide(&outside).unwrap().allow);
    }
    let lifetime =
        build("permit(principal, action, resource) when { context.svid_remaining_secs > 60 };");
    assert!(!lifetime.caches());
}

#[test]
fn the_scope_index_decides_as_cedar_does_over_the_whole_set() {
    let text = r#"
permit(principal == Signet::Workload::"spiffe://example.org/a", action == Signet::Action::"read", resource);
permit(principal == Signet::Workload::"spiffe://example.org/a", action, resource) when { context has zone && context.zone == "z1" };
permit(principal, action == Signet::Action::"write", resource) when { principal.spiffe_id like "spiffe://example.org/b*" };
forbid(principal == Signet::Workload::"spiffe://example.org/b", action == Signet::Action::"write", resource) when { context has zone && context.zone == "z2" };
forbid(principal, action == Signet::Action::"delete", resource);
permit(principal in Signet::TrustDomain::"example.org", action == Signet::Action::"delete", resource);
permit(principal, action in [Signet::Action::"read", Signet::Action::"write"], resource) when { context has posture && context.posture == "good" };
"#;
    let policies = Policies::build(&[PolicySource {
        name: "mix".into(),
        text: text.into(),
    }])
    .unwrap();
    let engine = Engine::new(policies.clone());
    let mut seen = (0, 0);
    for id in ["a", "b", "bb", "c"] {
        for action in ["read", "write", "delete"] {
            for attrs in [
                json!({}),
                json!({"zone": "z1"}),
                json!({"zone": "z2"}),
                json!({"posture": "good", "zone": "z2"}),
            ] {
                let r = ask(&format!("spiffe://example.org/{id}"), action, 10, attrs);
                let (cedar, entities) = r.to_cedar().unwrap();
                let whole =
                    cedar_policy::Authorizer::new().is_authorized(&cedar, &policies.set, &entities);
                let mut reasons: Vec<String> = whole
                    .diagnostics()
                    .reason()
                    .map(|p| p.to_string())
                    .collect();
                reasons.sort();
                let d = engine.decide(&r).unwrap();
                let allow = whole.decision() == cedar_policy::Decision::Allow;
                assert_eq!((d.allow, &d.policies), (allow, &reasons), "{id} {action}");
                if allow {
                    seen.0 += 1
                } else {
                    seen.1 += 1
                }
            }
        }
    }
    assert!(seen.0 > 5 && seen.1 > 5, "{seen:?}");
}
