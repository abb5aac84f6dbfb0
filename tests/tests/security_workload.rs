//! Workload identity theft, performed against the real agent by a local
//! unprivileged user (uid 65534, `signet-test-peer`): pid reuse, exec after
//! connect with the socket handed to another process, a binary path spoofed
//! from a mount namespace, and a same-size rewrite of a hashed binary. Each
//! test first shows the honest case is served, then that the attack is
//! refused. The tests run as root (they act as other users).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use signet_tests::bins::bins;
use signet_tests::peer::{copy_peer_to, dir_for, peer_as, report, spawn_with_pid, NOBODY};
use signet_tests::{start_pair, wait, TestAgent, TestServer};

const PATIENCE: Duration = Duration::from_secs(30);

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `/usr/bin/sleep` as /proc/<pid>/exe names it.
fn sleep_binary() -> PathBuf {
    std::fs::canonicalize("/usr/bin/sleep").expect("coreutils sleep")
}

/// Runs `fetch` (as `uid`, through `wrap` if given) until the agent serves
/// `want`, and returns that report; panics with the last one otherwise.
async fn fetch_until_served(
    agent: &TestAgent,
    uid: u32,
    program: Option<&Path>,
    want: &str,
) -> Value {
    let dir = dir_for(uid);
    let out = dir.path().join("fetch.json");
    wait::until(&format!("{want} served to uid {uid}"), PATIENCE, || {
        let out = out.clone();
        async move {
            let _ = std::fs::remove_file(&out);
            let args = ["fetch", "--socket", s(&agent.socket_path), "--out", s(&out)];
            let mut cmd = match program {
                Some(p) => {
                    use std::os::unix::process::CommandExt;
                    let mut c = Command::new(p);
                    c.args(args).uid(uid).gid(uid);
                    c
                }
                None => peer_as(uid, &args),
            };
            cmd.status().ok()?;
            let got = report(&out, PATIENCE).await;
            (got["spiffe_ids"] == serde_json::json!([want])).then_some(got)
        }
    })
    .await
}

/// Two entries for uid 65534: one for the peer binary itself (what an
/// honest process of that user runs), one for `sleep`. Their IDs.
fn honest_and_sleeper_entries(server: &TestServer, agent: &TestAgent) -> (String, String) {
    let uid = format!("unix:uid:{NOBODY}");
    let honest_id = server.id("/peer-tool");
    let sleeper_id = server.id("/sleeper");
    for (id, binary) in [
        (&honest_id, bins().peer.clone()),
        (&sleeper_id, sleep_binary()),
    ] {
        let path = format!("unix:path:{}", binary.display());
        server.create_entry(id, &agent.spiffe_id, &[&uid, &path], &[]);
    }
    (honest_id, sleeper_id)
}

async fn pair_open_to_all() -> (TestServer, TestAgent) {
    let (server, agent) = start_pair(&[]).await;
    agent.open_to_all_users();
    (server, agent)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_service_that_takes_a_departed_callers_pid_lends_it_nothing() {
    let (server, agent) = pair_open_to_all().await;
    // The victim: a program only root can run (its directory is 0700).
    let vault = tempfile::tempdir().unwrap();
    let victim = copy_peer_to(&vault.path().join("victim-service"));
    let victim_id = server.id("/victim");
    let out = server.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        &victim_id,
        "--parent-id",
        &agent.spiffe_id,
        "--selector",
        &format!("unix:path:{}", victim.display()),
    ]);
    assert!(out.status.success());
    // The admin is told what such an entry cannot stop.
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains("is selected by unix:path/unix:sha256 without unix:uid or unix:gid"),
        "{warning}"
    );
    // Honest: the service itself is served.
    fetch_until_served(&agent, 0, Some(&victim), &victim_id).await;

    // The attacker connects, hands the socket to its child, and exits.
    let reports = dir_for(NOBODY);
    let out = reports.path().join("attack.json");
    let go = reports.path().join("go");
    let mut attacker = peer_as(
        NOBODY,
        &[
            "hand-over",
            "--socket",
            s(&agent.socket_path),
            "--out",
            s(&out),
            "--go",
            s(&go),
        ],
    )
    .spawn()
    .unwrap();
    let pid = attacker.id();
    assert!(attacker.wait().unwrap().success(), "hand-over failed");
    let first = report(&out.with_extension("first"), PATIENCE).await;
    assert_eq!(first["code"], "PermissionDenied", "{first}");

    // The root service now runs under the attacker's pid...
    let mut service = spawn_with_pid(pid, || {
        let mut c = Command::new(&victim);
        c.arg("sleep");
        c
    })
    .expect("the victim never got the departed pid");
    std::fs::write(&go, b"").unwrap();
    // ...and the attacker's connection asks again.
    let got = report(&out, PATIENCE).await;
    service.kill().unwrap();
    service.wait().unwrap();
    assert_eq!(
        got["ok"], false,
        "the victim's identity went to the attacker: {got}"
    );
    assert_eq!(got["code"], "Unavailable", "{got}");
    let message = got["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "the process that connected (pid {pid}) has exited"
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_after_connect_with_the_socket_handed_on_is_refused() {
    let (server, agent) = pair_open_to_all().await;
    let (honest_id, _) = honest_and_sleeper_entries(&server, &agent);
    fetch_until_served(&agent, NOBODY, None, &honest_id).await;

    let reports = dir_for(NOBODY);
    let out = reports.path().join("attack.json");
    let go = reports.path().join("go");
    let sleep = sleep_binary();
    let mut attacker = peer_as(
        NOBODY,
        &[
            "hand-over",
            "--socket",
            s(&agent.socket_path),
            "--out",
            s(&out),
            "--go",
            s(&go),
            "--exec",
            s(&sleep),
            "30",
        ],
    )
    .spawn()
    .unwrap();
    let pid = attacker.id();
    // The connection's own process, honestly attested, before the exec.
    let first = report(&out.with_extension("first"), PATIENCE).await;
    assert_eq!(
        first["spiffe_ids"],
        serde_json::json!([honest_id]),
        "{first}"
    );
    let exe = format!("/proc/{pid}/exe");
    wait::until("the exec into sleep", PATIENCE, || {
        let exe = exe.clone();
        let sleep = sleep.clone();
        async move { (std::fs::read_link(&exe).ok()? == sleep).then_some(()) }
    })
    .await;
    std::fs::write(&go, b"").unwrap();
    let got = report(&out, PATIENCE).await;
    attacker.kill().unwrap();
    attacker.wait().unwrap();
    assert_eq!(
        got["ok"], false,
        "sleep's identity went to the child: {got}"
    );
    assert_eq!(got["code"], "Unavailable", "{got}");
    assert!(
        got["message"].as_str().unwrap().contains(&format!(
            "process {pid} runs another executable than when it connected"
        )),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_spoofed_by_a_bind_mount_in_a_user_namespace_gets_no_path_selector() {
    let (server, agent) = pair_open_to_all().await;
    let (honest_id, _) = honest_and_sleeper_entries(&server, &agent);
    let peer = bins().peer.clone();
    let sleep = sleep_binary();
    // The agent does give unix:path to this user's real binary.
    fetch_until_served(&agent, NOBODY, None, &honest_id).await;

    // In its own user and mount namespace the attacker puts its program
    // over sleep; /proc/<pid>/exe then reads the sleep path.
    let reports = dir_for(NOBODY);
    let out = reports.path().join("spoof.json");
    let script = format!(
        "mount --bind {peer} {sleep} && exec {sleep} fetch --socket {sock} --out {out}",
        peer = peer.display(),
        sleep = sleep.display(),
        sock = agent.socket_path.display(),
        out = out.display(),
    );
    let status = {
        use std::os::unix::process::CommandExt;
        Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
            .uid(NOBODY)
            .gid(NOBODY)
            .status()
            .expect("unshare (util-linux)")
    };
    assert!(status.success(), "the spoof itself failed: {status}");
    let got = report(&out, PATIENCE).await;
    assert_eq!(got["ok"], false, "the spoofed path was believed: {got}");
    assert_eq!(got["code"], "PermissionDenied", "{got}");
    assert_eq!(got["message"], "no identity issued", "{got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_same_size_rewrite_with_the_mtime_set_back_is_hashed_anew() {
    let (server, agent) = pair_open_to_all().await;
    // The attacker's own copy of a legitimate tool, in its own directory.
    let home = dir_for(NOBODY);
    let tool = home.path().join("tool");
    let mut legit = std::fs::read(&bins().peer).unwrap();
    legit.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(&tool, &legit).unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(
        &tool,
        Some(nix::unistd::Uid::from_raw(NOBODY)),
        Some(nix::unistd::Gid::from_raw(NOBODY)),
    )
    .unwrap();
    let hash = hex(&ring::digest::digest(&ring::digest::SHA256, &legit));
    let tool_id = server.id("/tool");
    server.create_entry(
        &tool_id,
        &agent.spiffe_id,
        &[
            &format!("unix:uid:{NOBODY}"),
            &format!("unix:sha256:{hash}"),
        ],
        &[],
    );
    fetch_until_served(&agent, NOBODY, Some(&tool), &tool_id).await;

    // Other bytes, same size, written in place; the mtime set back.
    let mtime = std::fs::metadata(&tool).unwrap().modified().unwrap();
    let mut forged = legit.clone();
    let tail = forged.len() - 4096;
    forged[tail..].fill(0xff);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&tool).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(&forged).unwrap();
        f.set_modified(mtime).unwrap();
    }
    let meta = std::fs::metadata(&tool).unwrap();
    assert_eq!(
        (meta.len(), meta.modified().unwrap()),
        (legit.len() as u64, mtime)
    );

    let out = home.path().join("forged.json");
    let status = {
        use std::os::unix::process::CommandExt;
        Command::new(&tool)
            .args(["fetch", "--socket", s(&agent.socket_path), "--out", s(&out)])
            .uid(NOBODY)
            .gid(NOBODY)
            .status()
            .unwrap()
    };
    assert!(status.success());
    let got = report(&out, PATIENCE).await;
    assert_eq!(got["ok"], false, "the stale hash was served: {got}");
    assert_eq!(got["message"], "no identity issued", "{got}");
}

fn hex(d: &ring::digest::Digest) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
