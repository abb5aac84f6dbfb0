//! The read-only dashboard in a real browser: Debian's Chromium driven by
//! Playwright (tests/browser/dashboard.mjs) logs in with the one-time link
//! from `signet-server dashboard login`, reads the agent count and each
//! authority's time left, which must match the CLI's `--output json`,
//! opens an agent's page, and saves a screenshot under target/.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use signet_core::{Clock, SystemClock};
use signet_tests::{TestAgent, TestServer};

fn node_modules() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-browser-driver");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (needs npm)",
        script.display()
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn cli_json(server: &TestServer, args: &[&str]) -> Value {
    serde_json::from_str(&server.cli_ok(args)).unwrap()
}

/// The dashboard's "time left" for `secs` (the same rule as its page).
fn left(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[tokio::test]
async fn an_operator_logs_in_once_and_sees_what_the_cli_says() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium (.ci/run installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "[dashboard]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let server = TestServer::start_with(&["--config", config.to_str().unwrap()]).await;
    let agent = TestAgent::start(&server).await;
    // Generated, never used: no page may show it.
    let unused_token = server.join_token();

    let login = cli_json(&server, &["dashboard", "login", "--output", "json"]);
    let url = login["url"].as_str().unwrap().to_owned();
    let code = url.rsplit("code=").next().unwrap().to_owned();
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-overview.png");
    let _ = std::fs::remove_file(&shot);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/dashboard.mjs");
    let modules = node_modules();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .arg(&url)
            .arg(&shot)
            .env("NODE_PATH", &modules)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(seen["unauthenticated_status"], 401);
    assert!(
        seen["after_login_url"].as_str().unwrap().ends_with("/ui"),
        "{}",
        seen["after_login_url"]
    );
    let agents = cli_json(&server, &["agent", "list", "--output", "json"]);
    assert_eq!(
        seen["agents_total"].as_u64().unwrap(),
        agents["agents"].as_array().unwrap().len() as u64
    );
    // Every authority the CLI lists, with the same end and its time left.
    let now = signet_core::clock::unix_seconds(SystemClock.now());
    let shown = seen["authorities"].as_array().unwrap();
    for kind in ["x509", "jwt"] {
        let listed = cli_json(&server, &["authority", kind, "show", "--output", "json"]);
        for a in listed["authorities"].as_array().unwrap() {
            let row = shown
                .iter()
                .find(|s| s["id"] == a["id"])
                .unwrap_or_else(|| panic!("authority {} not on the page: {shown:?}", a["id"]));
            assert_eq!(row["kind"], kind);
            assert_eq!(row["state"], a["state"]);
            let not_after = a["not_after"].as_i64().unwrap();
            assert_eq!(row["not_after"].as_i64().unwrap(), not_after);
            // Read a moment ago: this minute's or the last one's text.
            let text = row["time_left"].as_str().unwrap();
            let fresh = [left(not_after - now), left(not_after - now + 60)];
            assert!(fresh.iter().any(|t| t == text), "{text} vs {fresh:?}");
        }
    }
    assert_eq!(seen["agent_page_id"], agent.spiffe_id.as_str());
    assert!(seen["chart"].as_bool().unwrap());
    assert!(
        seen["chain_status"]
            .as_str()
            .unwrap()
            .starts_with("Chain intact"),
        "{}",
        seen["chain_status"]
    );
    assert_eq!(seen["reused_link_status"], 401, "a login link works once");
    for (name, html) in seen["pages"].as_object().unwrap() {
        let html = html.as_str().unwrap();
        assert!(!html.contains(&unused_token), "{name} shows a join token");
        assert!(!html.contains(&code), "{name} shows the login code");
        assert!(!html.contains("PRIVATE KEY"), "{name} shows key material");
    }
    let png = std::fs::metadata(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-overview.png"),
    )
    .unwrap();
    assert!(png.len() > 10_000, "screenshot of {} bytes", png.len());
}

/// `curl` to the dashboard, optionally with a client SVID: the status code.
async fn curl_status(url: &str, svid_dir: Option<&Path>) -> String {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", url]);
    if let Some(dir) = svid_dir {
        cmd.arg("--cert")
            .arg(dir.join("svid.pem"))
            .arg("--key")
            .arg(dir.join("key.pem"));
    }
    let out = cmd.output().await.expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn an_admin_svid_reads_the_dashboard_and_any_other_svid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "[dashboard]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let server = TestServer::start_with(&["--config", config.to_str().unwrap()]).await;
    let agent = TestAgent::start(&server).await;
    let admin_id = server.id("/ops/alice");
    let plain_id = server.id("/ops/bob");
    for (id, admin) in [(&admin_id, true), (&plain_id, false)] {
        let mut args = vec![
            "entry",
            "create",
            "--spiffe-id",
            id.as_str(),
            "--parent-id",
            agent.spiffe_id.as_str(),
            "--selector",
            "unix:uid:4242",
        ];
        if admin {
            args.push("--admin");
        }
        server.cli_ok(&args);
    }
    let mint = |id: &str, name: &str| {
        let out = dir.path().join(name);
        server.cli_ok(&[
            "x509",
            "mint",
            "--spiffe-id",
            id,
            "--write",
            out.to_str().unwrap(),
        ]);
        out
    };
    let admin_svid = mint(&admin_id, "alice");
    let plain_svid = mint(&plain_id, "bob");

    let login = cli_json(&server, &["dashboard", "login", "--output", "json"]);
    let base = login["url"]
        .as_str()
        .unwrap()
        .split("/ui")
        .next()
        .unwrap()
        .to_owned();
    let ui = format!("{base}/ui");
    assert_eq!(curl_status(&ui, Some(&admin_svid)).await, "200");
    assert_eq!(
        curl_status(&format!("{base}/ui/agents"), Some(&admin_svid)).await,
        "200"
    );
    assert_eq!(
        curl_status(&ui, Some(&plain_svid)).await,
        "401",
        "not an admin entry"
    );
    assert_eq!(curl_status(&ui, None).await, "401", "no certificate");
    // A certificate from outside the trust domain does not get past the handshake.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(admin_id.as_str()).unwrap(),
    )];
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(foreign.join("svid.pem"), cert.pem()).unwrap();
    std::fs::write(foreign.join("key.pem"), key.serialize_pem()).unwrap();
    let status = curl_status(&ui, Some(&foreign)).await;
    assert!(
        status == "000" || status == "401",
        "self-signed admin ID got {status}"
    );
}
