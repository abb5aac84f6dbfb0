//! Context-aware authorization end to end: Cedar policies created with
//! `signet-server policy`, validated with line and column, audited, synced
//! to the real agent, and decided there with no server round trip: by
//! `signet-agent api authorize`, by Envoy's `ext_authz` v3 (a client on
//! Envoy's own protos, as Envoy calls it), and in-process by a service
//! following the agent's set with `signet-authz`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tokio::time::Instant;

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{
    check_response, AttributeContext, CheckRequest, CheckResponse,
};
use serde_json::Value;
use signet_authz::{AgentPolicies, Peer as AuthzPeer};
use signet_core::TrustDomain;
use signet_tests::{my_uid_selector, wait, TestAgent, TestServer};
use spiffe::WorkloadApiClient;
use tonic::transport::Channel;

const PATIENCE: Duration = Duration::from_secs(20);

/// Billing reads during office hours from the internal zone; the
/// partner's workloads read and only read; nobody else anything.
const ORDERS: &str = r#"// Orders service.
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

@id("partner-read")
permit(
  principal in Signet::TrustDomain::"partner.test",
  action == Signet::Action::"read",
  resource
) when { context.federated };
"#;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_owned()
}

/// A server of example.org that knows partner.test (its bundle, set from a
/// real partner.test server), and an agent.
async fn start() -> (TestServer, TestAgent, TestServer, tempfile::TempDir) {
    start_agent_with("").await
}

async fn start_agent_with(
    agent_toml: &str,
) -> (TestServer, TestAgent, TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let partner = TestServer::start_in("partner.test", &[]).await;
    let bundle = write(
        dir.path(),
        "partner.json",
        &partner.cli_ok(&["bundle", "show", "--format", "spiffe"]),
    );
    server.cli_ok(&[
        "bundle",
        "set",
        "--trust-domain",
        "partner.test",
        "--path",
        &bundle,
    ]);
    let agent = if agent_toml.is_empty() {
        TestAgent::start(&server).await
    } else {
        let config = write(dir.path(), "agent.toml", agent_toml);
        let token = server.join_token();
        let mut agent = TestAgent::spawn_with(&server, Some(&token), &["--config", &config]);
        agent.wait_healthy().await;
        agent
    };
    (server, agent, partner, dir)
}

/// `api authorize`'s exit code and JSON answer.
fn authorize(agent: &TestAgent, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["api", "authorize", "--output", "json"];
    all.extend_from_slice(args);
    let out = agent.cli(&all);
    let code = out.status.code().unwrap();
    assert!(code == 0 || code == 2, "{}", text(&out));
    (code, serde_json::from_slice(&out.stdout).unwrap())
}

#[tokio::test]
async fn bad_policies_are_refused_with_line_and_column_and_changes_are_audited() {
    let (server, _agent, _partner, dir) = start().await;
    let d = dir.path();

    // A syntax error, an attribute the schema lacks, an unknown trust domain.
    let syntax = write(
        d,
        "syntax.cedar",
        "permit(principal, action, resource)\n  when { principal.spiffe_id == };\n",
    );
    let out = server.cli(&["policy", "validate", "--file", &syntax]);
    assert!(!out.status.success());
    assert!(text(&out).contains("syntax:2:"), "{}", text(&out));
    let attr = write(
        d,
        "attr.cedar",
        "permit(principal, action, resource)\n  when { principal.team == \"x\" };\n",
    );
    let out = server.cli(&["policy", "create", "--name", "attr", "--file", &attr]);
    assert!(!out.status.success());
    assert!(text(&out).contains("attr:2:"), "{}", text(&out));
    assert!(text(&out).contains("attribute `team`"), "{}", text(&out));
    assert!(!text(&out).contains("policy0"), "{}", text(&out));
    let foreign = write(
        d,
        "foreign.cedar",
        "permit(principal, action, resource)\n  when { principal.spiffe_id like \"spiffe://stranger.test/*\" };\n",
    );
    let out = server.cli(&["policy", "create", "--name", "foreign", "--file", &foreign]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("foreign:2:45: trust domain \"stranger.test\" is neither this one nor one it federates with"),
        "{}",
        text(&out)
    );

    // A good one, listed and shown; an invalid update leaves it as it was.
    let orders = write(d, "orders.cedar", ORDERS);
    let out = server.cli_ok(&["policy", "validate", "--file", &orders]);
    assert!(out.contains("orders/office-hours"), "{out}");
    server.cli_ok(&["policy", "create", "--name", "orders", "--file", &orders]);
    let dup = server.cli(&["policy", "create", "--name", "orders", "--file", &orders]);
    assert!(text(&dup).contains("already exists"), "{}", text(&dup));
    let list: Value =
        serde_json::from_str(&server.cli_ok(&["policy", "list", "--output", "json"])).unwrap();
    assert_eq!(list["policies"][0]["name"], "orders");
    assert_eq!(
        list["policies"][0]["policy_ids"],
        serde_json::json!(["orders/office-hours", "orders/partner-read"])
    );
    let refused = server.cli(&["policy", "update", "--name", "orders", "--file", &syntax]);
    assert!(!refused.status.success());
    assert_eq!(
        server.cli_ok(&["policy", "show", "--name", "orders"]),
        ORDERS.trim_end()
    );
    server.cli_ok(&["policy", "delete", "--name", "orders"]);
    let gone = server.cli(&["policy", "show", "--name", "orders"]);
    assert!(text(&gone).contains("policy \"orders\""), "{}", text(&gone));

    // Every change is an admin record, never with the policy's text.
    let out = server.audit(&["show", "--kind", "admin", "--output", "json"]);
    let records: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verbs: Vec<(String, String)> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verb"].as_str().unwrap_or("").starts_with("policy."))
        .map(|r| {
            let ok = if r["outcome"] == "ok" {
                "ok"
            } else {
                "refused"
            };
            (r["verb"].as_str().unwrap().to_owned(), ok.to_owned())
        })
        .collect();
    let expected = [
        ("policy.create", "refused"),
        ("policy.create", "refused"),
        ("policy.create", "ok"),
        ("policy.create", "refused"),
        ("policy.update", "refused"),
        ("policy.delete", "ok"),
    ]
    .map(|(v, o)| (v.to_owned(), o.to_owned()));
    assert_eq!(verbs, expected);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("office-hours"));
}

#[tokio::test]
async fn the_agent_decides_by_time_zone_and_federation_and_refuses_an_escalation() {
    let (server, agent, _partner, dir) = start().await;
    // No policy: denied by default.
    let billing = "spiffe://example.org/billing";
    let (code, d) = authorize(
        &agent,
        &[
            "--principal",
            billing,
            "--action",
            "read",
            "--resource",
            "/orders/1",
        ],
    );
    assert_eq!((code, d["allow"].as_bool()), (2, Some(false)), "{d}");
    assert_eq!(d["policies"], serde_json::json!([]));

    let orders = write(dir.path(), "orders.cedar", ORDERS);
    server.cli_ok(&["policy", "create", "--name", "orders", "--file", &orders]);
    let at = |hour: &str, zone: &str| -> (i32, Value) {
        let context = format!("{{\"zone\":\"{zone}\"}}");
        let at = format!("2026-12-07T{hour}:30:00Z");
        authorize(
            &agent,
            &[
                "--principal",
                billing,
                "--action",
                "read",
                "--resource",
                "/orders/1",
                "--context",
                &context,
                "--at",
                &at,
            ],
        )
    };
    // The agent has the policy once the office-hours question is allowed.
    wait::until("the policy on the agent", PATIENCE, || async {
        (at("10", "internal").0 == 0).then_some(())
    })
    .await;
    let (code, d) = at("10", "internal");
    assert_eq!(code, 0);
    assert_eq!(d["policies"], serde_json::json!(["orders/office-hours"]));
    let out = agent.cli(&[
        "api",
        "authorize",
        "--principal",
        billing,
        "--action",
        "read",
        "--resource",
        "/orders/1",
        "--context",
        "{\"zone\":\"internal\"}",
        "--at",
        "2026-12-07T10:30:00Z",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "allow\ndecided by: orders/office-hours\n"
    );
    // Night, or the wrong zone: denied.
    assert_eq!(at("03", "internal").0, 2);
    assert_eq!(at("10", "dmz").0, 2);

    // The partner's workload reads; its escalation to write is denied.
    let partner = "spiffe://partner.test/reporting";
    let ask = |action: &str| {
        authorize(
            &agent,
            &[
                "--principal",
                partner,
                "--action",
                action,
                "--resource",
                "/orders/1",
            ],
        )
    };
    let (code, d) = ask("read");
    assert_eq!(code, 0, "{d}");
    assert_eq!(d["policies"], serde_json::json!(["orders/partner-read"]));
    assert_eq!(ask("write").0, 2);
    assert_eq!(ask("delete").0, 2);

    // A question the schema cannot take is an error, not a deny.
    let out = agent.cli(&[
        "api",
        "authorize",
        "--principal",
        billing,
        "--action",
        "fly",
        "--resource",
        "/x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("\"fly\""), "{}", text(&out));
}

async fn ext_authz(socket: &Path) -> AuthorizationClient<Channel> {
    let channel = signet_proto::uds::channel(socket).await.unwrap();
    AuthorizationClient::new(channel)
}

/// What Envoy sends for `method path` from `principal` (and the URL-encoded
/// PEM certificate when it forwards it), with the route's extensions.
fn check_request(
    principal: &str,
    certificate: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    extensions: &[(&str, &str)],
) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                principal: principal.into(),
                certificate: certificate.into(),
                ..Peer::default()
            }),
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..HttpRequest::default()
                }),
            }),
            context_extensions: extensions
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..AttributeContext::default()
        }),
    }
}

/// gRPC code and HTTP status of Envoy's answer.
fn verdict(r: &CheckResponse) -> (i32, i32) {
    let http = match &r.http_response {
        Some(check_response::HttpResponse::OkResponse(_)) => 200,
        Some(check_response::HttpResponse::DeniedResponse(d)) => {
            d.status.as_ref().map_or(0, |s| s.code)
        }
        _ => 0,
    };
    (r.status.as_ref().map_or(-1, |s| s.code), http)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn an_ext_authz_decision_follows_a_policy_update_within_200ms() {
    let toml = "[authz]\njwt_audience = \"orders\"\n";
    let (server, agent, _partner, dir) = start_agent_with(toml).await;
    // This process is the orders client: its SVID is what Envoy forwards.
    let me = server.id("/orders-client");
    server.create_entry(&me, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    let workload = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let svid = wait::until("an X.509-SVID", PATIENCE, || async {
        workload.fetch_x509_svid().await.ok()
    })
    .await;
    let leaf = svid.cert_chain()[0].as_ref().to_vec();
    let pem = signet_core::pem::encode_certs([leaf.as_slice()]);
    let socket = agent.endpoint().trim_start_matches("unix://").to_owned();
    let mut client = ext_authz(Path::new(&socket)).await;
    let get = check_request("", &url_encode(&pem), "GET", "/orders/7?x=1", &[], &[]);
    let post = check_request("", &url_encode(&pem), "POST", "/orders/7", &[], &[]);

    // No policy yet: 403.
    let r = client.check(get.clone()).await.unwrap().into_inner();
    assert_eq!(verdict(&r), (7, 403), "{r:?}");

    let readers = format!(
        "permit(principal == Signet::Workload::\"{me}\", action == Signet::Action::\"read\", resource)\n  when {{ resource == Signet::Resource::\"/orders/7\" }};\n"
    );
    let file = write(dir.path(), "readers.cedar", &readers);
    server.cli_ok(&["policy", "create", "--name", "readers", "--file", &file]);
    let created = Instant::now();
    loop {
        let r = client.check(get.clone()).await.unwrap().into_inner();
        if verdict(&r) == (0, 200) {
            break;
        }
        assert!(
            created.elapsed() < Duration::from_millis(200),
            "the policy did not reach ext_authz within 200 ms: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let reached = created.elapsed();
    eprintln!("policy create → ext_authz allows: {reached:?}");
    // read, not write: the escalation is denied.
    let r = client.check(post.clone()).await.unwrap().into_inner();
    assert_eq!(verdict(&r), (7, 403), "{r:?}");

    // Envoy names the principal without forwarding the certificate.
    let named = check_request(&me, "", "GET", "/orders/7", &[], &[]);
    assert_eq!(
        verdict(&client.check(named).await.unwrap().into_inner()),
        (0, 200)
    );
    // A certificate that does not chain to a bundle the agent holds: 401.
    let forged = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut forged = forged;
    forged.subject_alt_names = vec![rcgen::SanType::URI(me.as_str().try_into().unwrap())];
    let key = rcgen::KeyPair::generate().unwrap();
    let forged = forged.self_signed(&key).unwrap();
    let r = client
        .check(check_request(
            "",
            &url_encode(&forged.pem()),
            "GET",
            "/orders/7",
            &[],
            &[],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&r), (16, 401), "{r:?}");
    // A JWT-SVID for the configured audience identifies the caller too;
    // one for another audience does not.
    for (audience, expected) in [("orders", (0, 200)), ("elsewhere", (16, 401))] {
        let jwt = workload
            .fetch_jwt_svid([audience], None)
            .await
            .unwrap()
            .token()
            .to_owned();
        let bearer = format!("Bearer {jwt}");
        let headers = [("authorization", bearer.as_str())];
        let by_jwt = check_request("", "", "GET", "/orders/7", &headers, &[]);
        let r = client.check(by_jwt).await.unwrap().into_inner();
        assert_eq!(verdict(&r), expected, "{audience}: {r:?}");
    }
    // The route may name the action and resource itself.
    let named = check_request(
        &me,
        "",
        "POST",
        "/rpc",
        &[],
        &[("signet_action", "read"), ("signet_resource", "/orders/7")],
    );
    assert_eq!(
        verdict(&client.check(named).await.unwrap().into_inner()),
        (0, 200)
    );

    // Deleting the policy takes the permission away as fast.
    server.cli_ok(&["policy", "delete", "--name", "readers"]);
    let deleted = Instant::now();
    loop {
        let r = client.check(get.clone()).await.unwrap().into_inner();
        if verdict(&r) == (7, 403) {
            break;
        }
        assert!(deleted.elapsed() < Duration::from_millis(200), "{r:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_service_follows_the_agent_policies_in_process() {
    let (server, agent, _partner, dir) = start().await;
    let me = server.id("/orders");
    server.create_entry(&me, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    let socket = agent.endpoint().trim_start_matches("unix://").to_owned();
    let mut policies = wait::until("the agent's policies", PATIENCE, || async {
        AgentPolicies::connect(&socket).await.ok()
    })
    .await;
    assert_eq!(
        policies.trust_domain(),
        Some(TrustDomain::new("example.org").unwrap())
    );
    assert!(policies.engine().policies().is_empty());

    // A peer that presented this SVID over TLS.
    let workload = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let svid = wait::until("an X.509-SVID", PATIENCE, || async {
        workload.fetch_x509_svid().await.ok()
    })
    .await;
    // The wall clock, as a service checking a live peer reads it.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    let peer = AuthzPeer::from_x509_svid(svid.cert_chain()[0].as_ref(), now).unwrap();
    assert_eq!(peer.spiffe_id.to_string(), me);
    assert!(peer.svid_remaining.unwrap() > Duration::from_secs(60));
    let own = TrustDomain::new("example.org").unwrap();
    let read = peer.request(&own, "read", "/orders/1", now, Default::default());
    assert!(!policies.engine().decide(&read).unwrap().allow);

    let fresh = write(
        dir.path(),
        "fresh.cedar",
        "permit(principal in Signet::TrustDomain::\"example.org\", action == Signet::Action::\"read\", resource)\n  when { context.svid_remaining_secs > 60 };\n",
    );
    server.cli_ok(&["policy", "create", "--name", "fresh", "--file", &fresh]);
    tokio::time::timeout(PATIENCE, policies.changed())
        .await
        .unwrap()
        .unwrap();
    let d = policies.engine().decide(&read).unwrap();
    assert!(d.allow);
    assert_eq!(d.policies, ["fresh"]);
    let write_req = peer.request(&own, "write", "/orders/1", now, Default::default());
    assert!(!policies.engine().decide(&write_req).unwrap().allow);
    // A JWT-SVID the agent validated decides the same way.
    let jwt = workload
        .fetch_jwt_svid(["orders"], None)
        .await
        .unwrap()
        .token()
        .to_owned();
    let by_jwt = policies.jwt_peer(&jwt, "orders", now).await.unwrap();
    assert_eq!(by_jwt.spiffe_id.to_string(), me);
    let d = policies
        .engine()
        .decide(&by_jwt.request(&own, "read", "/orders/1", now, Default::default()))
        .unwrap();
    assert!(d.allow);
}
