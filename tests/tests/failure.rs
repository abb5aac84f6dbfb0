//! Graceful behaviour when processes die: the agent keeps serving while the
//! server is away, restarts from disk, and a crashed server loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use signet_core::{Clock, SystemClock};
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use signet_tests::checks::{now_unix, serial_hex, validity};
use signet_tests::{my_uid_selector, start_pair, wait, TestServer};
use spiffe::WorkloadApiClient;

#[tokio::test]
async fn workloads_keep_svids_while_the_server_is_down_and_get_renewals_when_back() {
    let (mut server, agent) = start_pair(&[]).await;
    server.create_entry(
        &server.id("/resilient"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &["--x509-svid-ttl", "8s"],
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
    let first_leaf = first.default_svid().unwrap().leaf().as_bytes().to_vec();

    server.stop();
    // While the server is away the workload is still served its valid SVID.
    for _ in 0..5 {
        let svid = client
            .fetch_x509_svid()
            .await
            .expect("served while the server is down");
        let (_, not_after) = validity(svid.leaf().as_bytes());
        assert!(
            not_after > now_unix(),
            "only unexpired SVIDs while it lasts"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    server.start_again().await;

    // Renewals resume on the same open stream, without restarting anything.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let renewed = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a renewed SVID on the open stream within 30 s"
        );
        let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(2), stream.next()).await
        else {
            continue;
        };
        let leaf = msg.default_svid().unwrap().leaf().as_bytes().to_vec();
        if serial_hex(&leaf) != serial_hex(&first_leaf) {
            break leaf;
        }
    };
    assert!(validity(&renewed).1 > validity(&first_leaf).1);
}

#[tokio::test]
async fn an_svid_the_server_cannot_renew_is_withdrawn_at_its_expiry_not_after() {
    let (mut server, agent) = start_pair(&[]).await;
    server.create_entry(
        &server.id("/short"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &["--x509-svid-ttl", "4s"],
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
    // Gone for good before the half-life renewal: nothing can renew it.
    server.stop();
    let leaf = first.default_svid().unwrap().leaf().as_bytes().to_vec();
    let (_, not_after) = validity(&leaf);
    // Every message until the stream ends carries that same, unexpired SVID.
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(ctx))) => {
                let l = ctx.default_svid().unwrap().leaf().as_bytes().to_vec();
                assert_eq!(
                    serial_hex(&l),
                    serial_hex(&leaf),
                    "a renewal with the server down"
                );
                assert!(now_unix() < not_after, "served after its expiry");
            }
            Ok(other) => break other,
            Err(_) => panic!("the stream outlived the SVID's expiry by 10 s"),
        }
    };
    let ended_at = SystemClock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        matches!(end, Some(Err(spiffe::WorkloadApiError::NoIdentityIssued))),
        "withdrawn with no identity issued: {end:?}"
    );
    // At the expiry (whole seconds), not before and not a second after.
    let late = ended_at - not_after as f64;
    assert!(
        (0.0..1.0).contains(&late),
        "withdrawn {late:.3} s after notAfter"
    );
    let err = client.fetch_x509_svid().await.unwrap_err();
    assert!(
        matches!(err, spiffe::WorkloadApiError::NoIdentityIssued),
        "{err:?}"
    );
}

#[tokio::test]
async fn killed_agent_restarts_and_serves_from_disk_before_reaching_the_server() {
    let (mut server, mut agent) = start_pair(&[]).await;
    let id = server.id("/survivor");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let before = wait::until("an SVID", Duration::from_secs(20), || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;
    // Until the agent has written what it holds to its cache file.
    let cache = agent.data_dir.join("workload_cache.json");
    wait::until(
        "the SVID in the agent's cache file",
        Duration::from_secs(10),
        || {
            let cache = cache.clone();
            let id = id.clone();
            async move {
                let text = std::fs::read_to_string(&cache).ok()?;
                text.contains(&id).then_some(())
            }
        },
    )
    .await;

    agent.kill9();
    server.stop(); // so whatever the agent serves next can only come from its disk

    let started = Instant::now();
    agent.respawn();
    let after = wait::until(
        "an SVID from the restarted agent",
        Duration::from_secs(10),
        || async {
            let client = WorkloadApiClient::connect_to(agent.endpoint()).await.ok()?;
            client.fetch_x509_svid().await.ok()
        },
    )
    .await;
    let elapsed = started.elapsed();
    eprintln!(
        "restarted agent served its cached SVID {} ms after spawn",
        elapsed.as_millis()
    );
    assert_eq!(after.spiffe_id().to_string(), id);
    assert_eq!(
        serial_hex(after.leaf().as_bytes()),
        serial_hex(before.leaf().as_bytes())
    );
    // Goal 100 ms; ~55 ms measured here, including process spawn and connect.
    assert!(
        elapsed < Duration::from_secs(1),
        "served from disk at once, took {elapsed:?}"
    );
    server.start_again().await;
}

#[tokio::test]
async fn server_killed_mid_write_loses_nothing() {
    let mut server = TestServer::start().await;
    let parent = server.id("/signet/agent/join_token/crash");
    // Four writers race a kill -9: every acknowledged write must survive,
    // and some write must have been in flight when the kill landed.
    let pid = server.proc.as_ref().and_then(|p| p.pid()).unwrap();
    let started = Instant::now();
    let killed_at = std::thread::spawn(move || {
        // The kill must land at a real moment among real processes' writes.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(700));
        let at = started.elapsed();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        at
    });
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let bin = signet_tests::bins::bins().server.clone();
            let socket = server.admin_socket.clone();
            let parent = parent.clone();
            let td = server.trust_domain.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut tokens = Vec::new();
                let mut failed_in_flight = Vec::new();
                for i in 0..400 {
                    let call_started = started.elapsed();
                    let id = format!("spiffe://{td}/crash/{w}/{i}");
                    let out = std::process::Command::new(&bin)
                        .args([
                            "entry",
                            "create",
                            "--spiffe-id",
                            &id,
                            "--parent-id",
                            &parent,
                        ])
                        .args(["--selector", "unix:uid:1", "--admin-socket"])
                        .arg(&socket)
                        .output()
                        .unwrap();
                    if !out.status.success() {
                        failed_in_flight.push(call_started);
                        break;
                    }
                    acked.push((String::from_utf8_lossy(&out.stdout).trim().to_string(), id));
                    let call_started = started.elapsed();
                    let out = std::process::Command::new(&bin)
                        .args(["token", "generate", "--admin-socket"])
                        .arg(&socket)
                        .output()
                        .unwrap();
                    if !out.status.success() {
                        // A token write in flight counts as much as an entry's.
                        failed_in_flight.push(call_started);
                        break;
                    }
                    tokens.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
                }
                (acked, tokens, failed_in_flight)
            })
        })
        .collect();
    let killed_at = killed_at.join().unwrap();
    let mut created = Vec::new();
    let mut tokens = Vec::new();
    let mut in_flight = 0;
    for w in writers {
        let (acked, t, failed) = w.join().unwrap();
        created.extend(acked);
        tokens.extend(t);
        // A write that started before the kill and never got its answer.
        in_flight += failed.iter().filter(|s| **s < killed_at).count();
    }
    assert!(
        !created.is_empty(),
        "some writes were acknowledged before the kill"
    );
    assert!(in_flight > 0, "no write was in flight when the kill landed");

    server.crash_and_restart().await;
    let shown = server.cli_ok(&["entry", "show", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let entries = v["entries"].as_array().unwrap();
    for (entry_id, spiffe_id) in &created {
        let e = entries
            .iter()
            .find(|e| e["id"] == *entry_id)
            .unwrap_or_else(|| panic!("entry {entry_id} lost"));
        assert_eq!(e["spiffe_id"], *spiffe_id);
        assert_eq!(
            e["selectors"],
            serde_json::json!(["unix:uid:1"]),
            "entry whole, not half-written"
        );
    }
    // At most the writes in flight at the kill may have landed unacknowledged.
    assert!(entries.len() <= created.len() + in_flight);
    // Every acknowledged join token still works once.
    let last = tokens.last().expect("a token");
    let mut agent = signet_tests::TestAgent::spawn(&server, Some(last));
    agent.wait_healthy().await;
    assert!(
        server.cli_ok(&["agent", "list"]).contains(&agent.spiffe_id),
        "attested with a token issued before the crash"
    );
}
