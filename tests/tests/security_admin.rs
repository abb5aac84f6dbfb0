//! Holes in administration and configuration, tried on the real binaries:
//! registering or minting Signet's own IDs (and an entry stored with one
//! before they were refused), socket and data directories another user
//! made first, durations that overflow a certificate's times, and what the
//! datastore file reveals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use signet_proto::node::BatchSignX509SvidRequest;
use signet_tests::bins::bins;
use signet_tests::node::{node_client, sign_params};
use signet_tests::peer::NOBODY;
use signet_tests::process::Proc;
use signet_tests::workload::{raw_client, with_header};
use signet_tests::{checks, my_uid_selector, start_pair, wait, TestAgent, TestServer};

const PATIENCE: Duration = Duration::from_secs(30);

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Fails with `want` in its message, as an error (exit 1), not a panic.
fn refused(out: &Output, want: &str) {
    refused_with(out, 1, want);
}

/// A daemon refusing its configuration: exit 78, which the units do not
/// restart on.
fn refused_config(out: &Output, want: &str) {
    refused_with(out, 78, want);
}

fn refused_with(out: &Output, code: i32, want: &str) {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{text}");
    assert!(text.contains(want), "wanted {want:?} in: {text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn signet_ids_cannot_be_registered_or_minted() {
    let (server, agent) = start_pair(&[]).await;
    let uid = my_uid_selector();
    for path in ["/signet/server", "/signet/agent/join_token/x", "/signet"] {
        let id = server.id(path);
        let out = server.cli(&[
            "entry",
            "create",
            "--spiffe-id",
            &id,
            "--parent-id",
            &agent.spiffe_id,
            "--selector",
            &uid,
        ]);
        refused(&out, &format!("spiffe_id {id:?} is reserved"));
    }
    let out = server.cli(&[
        "entry",
        "create",
        "--node",
        "--spiffe-id",
        &server.id("/signet/agent/x509pop/x"),
        "--selector",
        "x509pop:subject:cn:edge",
    ]);
    refused(&out, "is reserved");
    let dir = tempfile::tempdir().unwrap();
    let out = server.cli(&[
        "x509",
        "mint",
        "--spiffe-id",
        &server.id("/signet/server"),
        "--write",
        s(dir.path()),
    ]);
    refused(&out, "is reserved");
    let out = server.cli(&[
        "jwt",
        "mint",
        "--spiffe-id",
        &server.id("/signet/agent/join_token/x"),
        "--audience",
        "a",
    ]);
    refused(&out, "is reserved");
    // What is not reserved still works.
    server.cli_ok(&[
        "jwt",
        "mint",
        "--spiffe-id",
        &server.id("/signets"),
        "--audience",
        "a",
    ]);
}

/// `sqlite3` on the server's datastore, with the server stopped.
fn sql(server: &TestServer, statement: &str) {
    let db = server.data_dir.join("datastore.sqlite3");
    let status = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
            s(&db),
            statement,
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_stored_with_a_signet_id_is_named_at_start_and_served_to_no_one() {
    // The old entries are written into the SQLite file by hand.
    let mut server = TestServer::start_sqlite().await;
    // Two entries for the agent that will attest with this token.
    let token = server.join_token();
    let agent_id = server.id(&format!("/signet/agent/join_token/{token}"));
    let uid = my_uid_selector();
    let kept = server.create_entry(&server.id("/kept"), &agent_id, &[&uid], &[]);
    let old = server.create_entry(&server.id("/old"), &agent_id, &[&uid], &[]);
    // An older version let this one be stored as the server's own ID.
    server.stop();
    sql(
        &server,
        &format!(
            "UPDATE entries SET spiffe_id = '{}' WHERE id = '{old}'",
            server.id("/signet/server")
        ),
    );
    server.start_again().await;
    let log = server.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("reserved SPIFFE ID") && l.contains(&old)),
        "{log}"
    );
    let mut agent = TestAgent::spawn(&server, Some(&token));
    agent.wait_healthy().await;
    let client = raw_client(&agent.socket_path).await;
    let ids = wait::until("the kept entry's SVID", PATIENCE, || {
        let mut client = client.clone();
        async move {
            let mut stream = client
                .fetch_x509svid(with_header(signet_proto::workload::X509svidRequest {}))
                .await
                .ok()?
                .into_inner();
            let ids: Vec<String> = stream
                .message()
                .await
                .ok()??
                .svids
                .into_iter()
                .map(|s| s.spiffe_id)
                .collect();
            (!ids.is_empty()).then_some(ids)
        }
    })
    .await;
    assert_eq!(ids, vec![server.id("/kept")], "{kept}");
    // Nor will the server sign it for that agent on request.
    let (chain, key) = agent.identity();
    let mut node = node_client(&server.addr, &chain, &key).await;
    let (params, _) = sign_params(&old, &server.id("/signet/server"));
    let results = node
        .batch_sign_x509_svid(BatchSignX509SvidRequest {
            params: vec![params],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 1);
    assert!(
        results[0].svid_chain.is_empty(),
        "{:?}",
        results[0].error_message
    );
    assert_eq!(results[0].error_code, tonic::Code::PermissionDenied as i32);
}

fn chown_to(path: &Path, uid: u32) {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(uid)),
    )
    .unwrap();
}

/// A directory another user made first (0755), and one anyone may write.
fn squatted_dirs(top: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let squat = top.join("squat");
    std::fs::create_dir(&squat).unwrap();
    std::fs::set_permissions(&squat, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown_to(&squat, NOBODY);
    let open = top.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    (squat, open)
}

fn run_for_a_while(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output().unwrap());
    });
    waited
        .recv_timeout(PATIENCE)
        .expect("still running: it took the directory")
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_and_data_directories_another_user_made_are_refused() {
    let top = tempfile::tempdir().unwrap();
    let (squat, open) = squatted_dirs(top.path());
    let server_run = |admin: &Path, data: &Path| {
        let mut cmd = Command::new(&bins().server);
        cmd.args([
            "run",
            "--bind",
            "127.0.0.1:0",
            "--admin-socket",
            s(admin),
            "--data-dir",
            s(data),
        ]);
        run_for_a_while(&mut cmd)
    };
    let data = top.path().join("server-data");
    let out = server_run(&squat.join("admin.sock"), &data);
    refused(
        &out,
        &format!("{} belongs to uid {NOBODY}, not to uid 0", squat.display()),
    );
    let out = server_run(&open.join("admin.sock"), &data);
    refused(
        &out,
        &format!(
            "{} (mode 0777) is writable by users other than its owner",
            open.display()
        ),
    );
    let out = server_run(&top.path().join("admin.sock"), &squat);
    refused(
        &out,
        &format!("{} belongs to uid {NOBODY}", squat.display()),
    );

    let agent_run = |socket: &Path, data: &Path| {
        let mut cmd = Command::new(&bins().agent);
        cmd.args([
            "run",
            "--socket-path",
            s(socket),
            "--data-dir",
            s(data),
            "--server-address",
            "127.0.0.1:1",
            "--join-token",
            "t",
            "--insecure-bootstrap",
        ]);
        run_for_a_while(&mut cmd)
    };
    let data = top.path().join("agent-data");
    let out = agent_run(&squat.join("api.sock"), &data);
    refused(
        &out,
        &format!("{} belongs to uid {NOBODY}, not to uid 0", squat.display()),
    );
    let out = agent_run(&open.join("api.sock"), &data);
    refused(&out, "is writable by users other than its owner");
    let out = agent_run(&top.path().join("api.sock"), &squat);
    refused(
        &out,
        &format!("{} belongs to uid {NOBODY}", squat.display()),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn root_defaults_are_the_packaged_runtime_paths_and_the_clis_find_them() {
    let top = tempfile::tempdir().unwrap();
    let mut server = Command::new(&bins().server);
    server.args([
        "run",
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        s(&top.path().join("server")),
    ]);
    let server = Proc::spawn("signet-server", server, top.path());
    let cli = |bin: &Path, args: &[&str]| {
        Command::new(bin)
            .args(args)
            .env_remove("SPIFFE_ENDPOINT_SOCKET")
            .output()
            .unwrap()
    };
    wait::until(
        "the server on its default admin socket",
        PATIENCE,
        || async {
            cli(&bins().server, &["healthcheck"])
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    let admin_dir = std::fs::metadata("/run/signet-server").unwrap();
    assert_eq!((admin_dir.uid(), admin_dir.mode() & 0o777), (0, 0o700));
    let socket = std::fs::metadata("/run/signet-server/admin.sock").unwrap();
    assert_eq!(
        socket.mode() & 0o777,
        0o600,
        "only root and the server's user reach it"
    );
    let addr = signet_tests::logged_addr(&server.log_text(), "Node API on ").unwrap();
    let token = String::from_utf8(cli(&bins().server, &["token", "generate"]).stdout).unwrap();
    let mut agent = Command::new(&bins().agent);
    agent.args([
        "run",
        "--server-address",
        &addr,
        "--data-dir",
        s(&top.path().join("agent")),
        "--join-token",
        token.trim(),
        "--insecure-bootstrap",
    ]);
    let agent = Proc::spawn("signet-agent", agent, top.path());
    wait::until("the agent on its default socket", PATIENCE, || async {
        cli(&bins().agent, &["healthcheck"])
            .status
            .success()
            .then_some(())
    })
    .await;
    let public = std::fs::metadata("/run/signet-agent/public").unwrap();
    assert_eq!((public.uid(), public.mode() & 0o777), (0, 0o755));
    drop(agent);
}

#[tokio::test(flavor = "multi_thread")]
async fn durations_that_overflow_a_certificate_are_refused_naming_the_flag() {
    let top = tempfile::tempdir().unwrap();
    let server_run = |flags: &[&str]| {
        let mut cmd = Command::new(&bins().server);
        cmd.args([
            "run",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            s(&top.path().join("d")),
        ])
        .args(["--admin-socket", s(&top.path().join("admin.sock"))])
        .args(flags);
        run_for_a_while(&mut cmd)
    };
    refused_config(
        &server_run(&["--not-before-backdate", "1000000d"]),
        "not_before_backdate (--not-before-backdate) of 86400000000s is above the limit of 86400s",
    );
    refused_config(
        &server_run(&["--ca-ttl", "3000000d"]),
        "ca_ttl (--ca-ttl) of 259200000000s is above the limit of 316224000s",
    );
    refused_config(
        &server_run(&["--ca-ttl", "1000000d"]),
        "ca_ttl (--ca-ttl) of 86400000000s",
    );
    let mut agent = Command::new(&bins().agent);
    agent.args([
        "run",
        "--data-dir",
        s(&top.path().join("a")),
        "--jwt-leeway",
        "1000000d",
    ]);
    refused_config(
        &run_for_a_while(&mut agent),
        "invalid --jwt-leeway: 86400000000s is above the limit of 3600s",
    );
    // At the bounds a server starts and its CA holds the time asked for.
    let server =
        TestServer::start_with(&["--ca-ttl", "3660d", "--not-before-backdate", "1d"]).await;
    let ca = server.bundle_der();
    let (_, not_after) = checks::validity(&ca[0]);
    let want = checks::now_unix() + 3660 * 86_400;
    assert!((not_after - want).abs() < 120, "{not_after} vs {want}");
    let out = server.cli(&["token", "generate", "--ttl", "400d"]);
    refused(
        &out,
        "ttl of 34560000s is above the limit of 31622400s for a join token",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_datastore_is_private_and_holds_no_usable_join_token() {
    // The SQLite file's bytes and mode.
    let server = TestServer::start_sqlite().await;
    let token = server.join_token();
    let db = server.data_dir.join("datastore.sqlite3");
    let mut bytes = Vec::new();
    for file in ["datastore.sqlite3", "datastore.sqlite3-wal"] {
        let path = server.data_dir.join(file);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600, "{file}");
        bytes.extend(std::fs::read(&path).unwrap());
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(token.as_bytes()),
        "the token is in {}",
        db.display()
    );
    let hash: String = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(contains(hash.as_bytes()), "its SHA-256 is what is stored");
    // And the token still attests.
    let mut agent = TestAgent::spawn(&server, Some(&token));
    agent.wait_healthy().await;
}
