//! Several servers on one PostgreSQL: no single point of failure. Real
//! `signet-server`s on a fresh database of a real cluster, real agents that
//! know every server, workloads checked with the `spiffe` crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use signet_proto::admin::admin_client::AdminClient;
use signet_proto::admin::Entry;
use signet_tests::checks::{now_unix, serial_hex, validity};
use signet_tests::federation::served_document;
use signet_tests::postgres::Cluster;
use signet_tests::{http, my_uid_selector, wait, AgentOptions, HaGroup, TestAgent, TestServer};
use spiffe::WorkloadApiClient;
use tokio::time::Instant;

/// The leaf of the workload's default X.509-SVID, once it has one.
async fn leaf(agent: &TestAgent) -> Vec<u8> {
    wait::until("an X.509-SVID", Duration::from_secs(20), || async {
        let client = WorkloadApiClient::connect_to(agent.endpoint()).await.ok()?;
        let svid = client.fetch_x509_svid().await.ok()?;
        Some(svid.leaf().as_bytes().to_vec())
    })
    .await
}

/// The Admin API over a server's socket, to see status codes.
async fn admin(socket: &Path) -> AdminClient<tonic::transport::Channel> {
    let channel = signet_proto::uds::channel(socket).await.unwrap();
    AdminClient::new(channel)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_created_on_server_a_reaches_a_workload_of_the_agent_synced_to_b() {
    let group = HaGroup::start(2, &[]).await;
    let (a, b) = (&group.servers[0], &group.servers[1]);
    // Attested through B, and B is the only server it knows.
    let agent = group.agent_with(1, &b.addr).await;
    let started = Instant::now();
    a.create_entry(&a.id("/web"), &agent.spiffe_id, &[&my_uid_selector()], &[]);
    let leaf = leaf(&agent).await;
    assert_eq!(
        signet_tests::checks::assert_svid_leaf_profile(&leaf),
        "spiffe://example.org/web"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Both servers show the entry, and both servers' CAs are in the bundle
    // every server publishes (B signed this SVID; A's CA is trusted too).
    assert!(b
        .cli_ok(&["entry", "show", "--spiffe-id", &b.id("/web")])
        .contains("/web"));
    let sorted = |mut v: Vec<Vec<u8>>| {
        v.sort();
        v
    };
    assert_eq!(a.bundle_der().len(), 2);
    assert_eq!(sorted(a.bundle_der()), sorted(b.bundle_der()));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_an_agents_server_moves_it_to_the_other_with_no_stream_error_and_rotation_goes_on(
) {
    let mut group = HaGroup::start(2, &[]).await;
    let agent = group.agent(0).await;
    let a = &group.servers[0];
    a.create_entry(
        &a.id("/rotating"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &["--x509-svid-ttl", "6s"],
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let (mut stream, first) = wait::until("an X.509 stream", Duration::from_secs(20), || async {
        let mut s = client.stream_x509_contexts().await.ok()?;
        let first = s.next().await?.ok()?;
        Some((s, first))
    })
    .await;
    let mut serials = BTreeSet::from([serial_hex(first.default_svid().unwrap().leaf().as_bytes())]);

    group.servers[0].kill9();
    let killed = Instant::now();
    let mut after_kill = BTreeSet::new();
    // Two and a half lifetimes: rotations fall during and after the failover.
    while killed.elapsed() < Duration::from_secs(15) {
        let Ok(next) = tokio::time::timeout(Duration::from_secs(1), stream.next()).await else {
            continue;
        };
        let msg = next
            .expect("the stream stays open")
            .expect("no error on the stream during the failover");
        let leaf = msg.default_svid().unwrap().leaf().as_bytes().to_vec();
        assert!(
            validity(&leaf).1 > now_unix(),
            "never an expired SVID on the stream"
        );
        let serial = serial_hex(&leaf);
        if serials.insert(serial.clone()) {
            after_kill.insert(serial);
        }
    }
    assert!(
        after_kill.len() >= 2,
        "rotations went on through B: {after_kill:?}"
    );
    let log = agent.log_text();
    assert!(log.contains("switched to another server"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_token_used_on_both_servers_at_once_attests_exactly_one_agent() {
    let group = HaGroup::start(2, &[]).await;
    let (a, b) = (&group.servers[0], &group.servers[1]);
    let token = a.join_token();
    let only = |server: &TestServer| AgentOptions {
        server_address: Some(server.addr.clone()),
        ..AgentOptions::default()
    };
    let agents = [
        TestAgent::spawn_opts(a, Some(&token), only(a)),
        TestAgent::spawn_opts(b, Some(&token), only(b)),
    ];
    let healthy = wait::until("one of them to attest", Duration::from_secs(30), || async {
        let up: Vec<bool> = agents
            .iter()
            .map(|agent| agent.cli(&["healthcheck"]).status.success())
            .collect();
        up.contains(&true).then_some(up)
    })
    .await;
    // The other was refused for good: give it time to have tried.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let up: Vec<bool> = agents
        .iter()
        .map(|agent| agent.cli(&["healthcheck"]).status.success())
        .collect();
    assert_eq!(up.iter().filter(|u| **u).count(), 1, "{healthy:?} {up:?}");
    let loser = up.iter().position(|u| !u).unwrap();
    assert!(
        agents[loser]
            .log_text()
            .contains("join token does not exist or has already been used"),
        "{}",
        agents[loser].log_text()
    );
    let listed: serde_json::Value =
        serde_json::from_str(&b.cli_ok(&["agent", "list", "--output", "json"])).unwrap();
    assert_eq!(listed["agents"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ban_made_on_one_server_cuts_off_an_agent_synced_to_the_other() {
    let group = HaGroup::start(2, &[]).await;
    let (a, b) = (&group.servers[0], &group.servers[1]);
    let agent = group.agent_with(1, &b.addr).await;
    a.create_entry(
        &a.id("/doomed"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    leaf(&agent).await;
    a.cli_ok(&["agent", "ban", "--spiffe-id", &agent.spiffe_id]);
    wait::until(
        "the workload loses its SVID",
        Duration::from_secs(10),
        || async {
            let client = WorkloadApiClient::connect_to(agent.endpoint()).await.ok()?;
            client.fetch_x509_svid().await.is_err().then_some(())
        },
    )
    .await;
    assert!(agent.log_text().contains("banned"), "{}", agent.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_are_listed_a_taint_and_revocation_reach_every_server_and_a_lost_one_is_removed() {
    let mut group = HaGroup::start(2, &[]).await;
    let ids = group.server_ids();
    let (a, b) = (&group.servers[0], &group.servers[1]);
    let listed = a.cli_ok(&["server", "list"]);
    assert!(
        listed.contains(&format!("{} (this server)", ids[0])),
        "{listed}"
    );
    assert!(listed.contains(&ids[1]), "{listed}");
    // B rotates its CA; A taints and then revokes B's old one.
    b.cli_ok(&["authority", "x509", "prepare"]);
    b.cli_ok(&["authority", "x509", "activate"]);
    let old = b.authority_in_state("x509", "old").unwrap();
    wait::until(
        "A's CA and both of B's in A's bundle",
        Duration::from_secs(10),
        || async { (a.bundle_der().len() == 3).then_some(()) },
    )
    .await;
    a.cli_ok(&["authority", "x509", "taint", "--id", &old]);
    wait::until("B shows the taint", Duration::from_secs(10), || async {
        b.authorities("x509")
            .iter()
            .any(|(id, _, tainted)| id == &old && *tainted)
            .then_some(())
    })
    .await;
    a.cli_ok(&["authority", "x509", "revoke", "--id", &old]);
    for server in [a, b] {
        wait::until(
            "the revoked CA leaves the bundle",
            Duration::from_secs(10),
            || async { (server.bundle_der().len() == 2).then_some(()) },
        )
        .await;
    }
    // A server cannot remove itself; a lost one is removed, its
    // authorities kept until they expire.
    let refused = a.cli(&["server", "remove", "--id", &ids[0]]);
    assert!(!refused.status.success());
    group.servers[1].kill9();
    let a = &group.servers[0];
    a.cli_ok(&["server", "remove", "--id", &ids[1]]);
    let listed = a.cli_ok(&["server", "list", "--output", "json"]);
    assert!(!listed.contains(&ids[1]), "{listed}");
    assert_eq!(a.bundle_der().len(), 2, "B's CA stays until it expires");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_for_30s_keeps_workloads_served_refuses_writes_and_all_resumes() {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let url = cluster.fresh_database();
    let group = HaGroup::start_on(url, 2, &["--telemetry-bind", "127.0.0.1:0"]).await;
    let agent = group.agent(0).await;
    let a = &group.servers[0];
    a.create_entry(
        &a.id("/steady"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let before = leaf(&agent).await;
    let telemetry = a.telemetry_addr();
    assert_eq!(http::get(&telemetry, "/ready").await.unwrap().0, 200);

    let cluster = std::sync::Arc::new(cluster);
    let down = cluster.clone();
    tokio::task::spawn_blocking(move || down.stop())
        .await
        .unwrap();
    let stopped = Instant::now();
    let mut admin = admin(&a.admin_socket).await;
    let mut checked_write = false;
    while stopped.elapsed() < Duration::from_secs(30) {
        // The workload keeps its valid SVID.
        let client = WorkloadApiClient::connect_to(agent.endpoint())
            .await
            .unwrap();
        let svid = client
            .fetch_x509_svid()
            .await
            .expect("served while the database is down");
        assert_eq!(svid.leaf().as_bytes(), before.as_slice());
        assert!(validity(svid.leaf().as_bytes()).1 > now_unix());
        // Not ready, and says so.
        let (code, body) = http::get(&telemetry, "/ready").await.unwrap();
        assert_eq!(code, 503, "{body}");
        assert!(!a.cli(&["healthcheck"]).status.success());
        if !checked_write {
            let refused = admin
                .create_entry(Entry {
                    spiffe_id: a.id("/during"),
                    parent_id: agent.spiffe_id.clone(),
                    selectors: vec![my_uid_selector()],
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
            checked_write = true;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let up = cluster.clone();
    tokio::task::spawn_blocking(move || up.start_again())
        .await
        .unwrap();
    for server in &group.servers {
        wait::until("ready again", Duration::from_secs(30), || async {
            server.cli(&["healthcheck"]).status.success().then_some(())
        })
        .await;
    }
    assert_eq!(http::get(&telemetry, "/ready").await.unwrap().0, 200);
    // Nothing of the refused write was stored; new writes reach workloads.
    let listed = a.cli_ok(&["entry", "show", "--spiffe-id", &a.id("/during")]);
    assert!(!listed.contains("/during"), "{listed}");
    let b = &group.servers[1];
    b.create_entry(
        &b.id("/after"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    wait::until("the new entry's SVID", Duration::from_secs(30), || async {
        let client = WorkloadApiClient::connect_to(agent.endpoint()).await.ok()?;
        let ctx = client.fetch_x509_context().await.ok()?;
        ctx.svids()
            .iter()
            .any(|s| s.spiffe_id().to_string() == b.id("/after"))
            .then_some(())
    })
    .await;
}

/// A root CA and its key as PEM files in `dir` (the key 0600).
fn upstream_root(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    use std::os::unix::fs::PermissionsExt;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Upstream Root");
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("root.pem"), dir.join("root.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert_path, key_path, cert.der().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn under_an_upstream_root_the_bundle_is_the_root_alone_whatever_servers_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, root_der) = upstream_root(dir.path());
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream_authority.disk]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let mut group = HaGroup::start(2, &["--config", config]).await;
    for server in &group.servers {
        assert_eq!(server.bundle_der(), vec![root_der.clone()]);
    }
    let sequence = group.servers[0].spiffe_bundle()["spiffe_sequence"].clone();
    let agent = group.agent(1).await;
    let b = &group.servers[1];
    b.create_entry(
        &b.id("/chained"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let svid = wait::until("a chained SVID", Duration::from_secs(20), || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;
    // Leaf and its server's intermediate; it validates against the root.
    assert_eq!(svid.cert_chain().len(), 2);
    let chain: Vec<Vec<u8>> = svid
        .cert_chain()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    signet_core::x509::validate_x509_svid(
        &chain,
        std::slice::from_ref(&root_der),
        signet_core::Clock::now(&signet_core::SystemClock),
    )
    .unwrap();
    // A third server joins and the first goes: the X.509 part of the bundle
    // stays the root alone (the JWT part gains the new server's key: JWT
    // keys are each server's own).
    group
        .servers
        .push(TestServer::start_on(&group.url, &["--config", config]).await);
    group.servers[0].kill9();
    let c = &group.servers[2];
    assert_eq!(c.bundle_der(), vec![root_der]);
    let after = c.spiffe_bundle();
    let x509_keys = after["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["use"] == "x509-svid")
        .count();
    assert_eq!(x509_keys, 1);
    assert!(after["spiffe_sequence"].as_u64() > sequence.as_u64());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_server_of_a_group_serves_the_same_bundle_document() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[federation.bundle_endpoint]\nbind = \"127.0.0.1:0\"\nrefresh_hint = \"5s\"\n",
    )
    .unwrap();
    let group = HaGroup::start(2, &["--config", config.path().to_str().unwrap()]).await;
    let (a, b) = (&group.servers[0], &group.servers[1]);
    // Both CAs, once each server has read the other's.
    let both = |n: usize| async move {
        wait::until(
            "the same document on both",
            Duration::from_secs(10),
            || async {
                let (da, db) = tokio::join!(served_document(a), served_document(b));
                let keys = da["keys"].as_array()?;
                let cas = keys.iter().filter(|k| k["use"] == "x509-svid").count();
                (da == db && cas == n).then_some(da)
            },
        )
        .await
    };
    let first = both(2).await;
    assert_eq!(first["spiffe_refresh_hint"], 5);

    // B prepares a CA: both serve it, at a sequence further on.
    b.cli_ok(&["authority", "x509", "prepare"]);
    let next = both(3).await;
    assert!(next["spiffe_sequence"].as_u64() > first["spiffe_sequence"].as_u64());
}
