//! Each workload selector the README lists for the unix and systemd
//! attestors, attested from a real process: its user, group and gid, the
//! binary's path and hash, the systemd unit of the cgroup the test puts it
//! in, and that unit's FragmentPath asked over D-Bus (a private dbus-daemon,
//! with a stand-in for systemd's manager object on it). Each entry names
//! one selector alone, so each one served proves that selector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use signet_tests::peer::{copy_peer_to, report, spawn_peer, KillOnDrop};
use signet_tests::{wait, AgentOptions, TestAgent, TestServer};

const PATIENCE: Duration = Duration::from_secs(30);

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A dbus-daemon of its own that lets anyone own any name; its address.
fn private_bus(dir: &Path) -> (KillOnDrop, String) {
    let socket = dir.join("bus");
    let config = dir.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>"#,
            socket.display()
        ),
    )
    .unwrap();
    let daemon = Command::new("dbus-daemon")
        .args(["--nofork", "--config-file", s(&config)])
        .stdout(Stdio::null())
        .spawn()
        .expect("dbus-daemon (apt-get install dbus)");
    (
        KillOnDrop(daemon),
        format!("unix:path={}", socket.display()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_unix_and_systemd_selector_is_attested_from_the_real_process() {
    let dir = tempfile::tempdir().unwrap();
    let unit = format!("signet-selectors-{}.service", std::process::id());
    let fragment = format!("/etc/systemd/system/{unit}");
    let (_bus, address) = private_bus(dir.path());
    let ready = dir.path().join("systemd.json");
    wait::until("the private bus", PATIENCE, || async {
        Path::new(address.trim_start_matches("unix:path="))
            .exists()
            .then_some(())
    })
    .await;
    let _systemd = spawn_peer(
        0,
        &[
            "fake-systemd",
            "--address",
            &address,
            "--unit",
            &unit,
            "--fragment",
            &fragment,
            "--ready",
            s(&ready),
        ],
    );
    report(&ready, PATIENCE).await;

    let server = TestServer::start().await;
    let token = server.join_token();
    let options = AgentOptions {
        env: vec![("DBUS_SYSTEM_BUS_ADDRESS".into(), address.clone())],
        ..AgentOptions::default()
    };
    let mut agent = TestAgent::spawn_opts(&server, Some(&token), options);
    agent.wait_healthy().await;

    // The workload: a copy of the peer binary, run as root in the unit's cgroup.
    let binary = copy_peer_to(&dir.path().join("workload"));
    let hash: String =
        ring::digest::digest(&ring::digest::SHA256, &std::fs::read(&binary).unwrap())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let selectors = [
        ("/by-user", "unix:user:root".to_string()),
        ("/by-group", "unix:group:root".to_string()),
        ("/by-gid", "unix:gid:0".to_string()),
        ("/by-path", format!("unix:path:{}", binary.display())),
        ("/by-sha256", format!("unix:sha256:{hash}")),
        ("/by-unit", format!("systemd:id:{unit}")),
        ("/by-fragment", format!("systemd:fragment_path:{fragment}")),
        // Ones the workload does not have.
        ("/not-nobody", "unix:user:nobody".to_string()),
        ("/not-other-unit", "systemd:id:other.service".to_string()),
    ];
    for (path, selector) in &selectors {
        server.create_entry(&server.id(path), &agent.spiffe_id, &[selector], &[]);
    }
    let cgroup = Path::new("/sys/fs/cgroup/systemd/system.slice").join(&unit);
    std::fs::create_dir_all(&cgroup).expect("a cgroup under name=systemd (run as root)");
    let out = dir.path().join("fetch.json");
    let script = format!(
        "echo $$ > {procs} && exec {bin} fetch --socket {sock} --out {out}",
        procs = cgroup.join("cgroup.procs").display(),
        bin = binary.display(),
        sock = agent.socket_path.display(),
        out = out.display(),
    );
    let want: BTreeSet<String> = selectors[..7].iter().map(|(p, _)| server.id(p)).collect();
    let got = wait::until("every selector's entry served", PATIENCE, || {
        let (script, out, want) = (script.clone(), out.clone(), want.clone());
        async move {
            let _ = std::fs::remove_file(&out);
            Command::new("sh").args(["-c", &script]).status().ok()?;
            let v = report(&out, PATIENCE).await;
            let ids: BTreeSet<String> = serde_json::from_value(v["spiffe_ids"].clone()).ok()?;
            (ids == want).then_some(ids)
        }
    })
    .await;
    let _ = std::fs::remove_dir(&cgroup);
    assert_eq!(got, want);
    // The bus was asked: the agent's log has no D-Bus failure.
    assert!(!agent.log_text().contains("D-Bus"), "{}", agent.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_trust_bundle_is_used_for_first_contact_and_a_wrong_one_refused() {
    let server = TestServer::start().await;
    let stranger = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let right = dir.path().join("right.pem");
    let wrong = dir.path().join("wrong.pem");
    std::fs::write(&right, server.cli_ok(&["bundle", "show"])).unwrap();
    std::fs::write(&wrong, stranger.cli_ok(&["bundle", "show"])).unwrap();
    let token = server.join_token();

    // Pinned to another server's CA: the TLS handshake fails, nothing is
    // sent, the token stays unused, and the agent says why and exits.
    let mut refused = TestAgent::spawn_opts(
        &server,
        Some(&token),
        AgentOptions {
            extra: vec!["--trust-bundle".into(), s(&wrong).into()],
            ..AgentOptions::default()
        },
    );
    let status = refused
        .proc
        .as_mut()
        .unwrap()
        .wait_exit(PATIENCE)
        .await
        .expect("the agent gives up");
    // A server that cannot be verified may be fixed on its side: exit 1,
    // which the unit restarts (not 77, which it leaves failed).
    assert_eq!(status.code(), Some(1));
    let log = refused.log_text();
    let error = log
        .lines()
        .find(|l| l.contains(" ERROR "))
        .unwrap_or_default();
    assert!(
        error.contains(": node attestation failed: cannot connect to server")
            && error.ends_with("invalid peer certificate: UnknownIssuer"),
        "{log}"
    );
    assert_eq!(server.cli_ok(&["agent", "list"]), "Found 0 attested agents");

    // Pinned to the right one: attested with the same token.
    let mut agent = TestAgent::spawn_opts(
        &server,
        Some(&token),
        AgentOptions {
            extra: vec!["--trust-bundle".into(), s(&right).into()],
            ..AgentOptions::default()
        },
    );
    agent.wait_healthy().await;
    assert!(
        server.cli_ok(&["agent", "list"]).contains(&agent.spiffe_id),
        "attested with a pinned bundle"
    );
}
