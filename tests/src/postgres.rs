//! A real PostgreSQL for the tests: a cluster of our own on a temp data dir
//! and a free port, run as an unprivileged user (PostgreSQL refuses root),
//! and a fresh database per test.
//!
//! `scripts/test` starts one cluster for the whole run (`signet-test-postgres`)
//! and names it in `SIGNET_TEST_POSTGRES`; without it, a test process
//! starts its own on first use. Tests that stop the database start a
//! private [`Cluster`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tempfile::TempDir;

/// The admin URL of the run's shared cluster, when `scripts/test` started one.
pub const ENV: &str = "SIGNET_TEST_POSTGRES";

/// The superuser every cluster here is made with (trust auth on loopback).
const SUPERUSER: &str = "signet";

/// Where PostgreSQL's server programs are: Debian keeps them out of PATH.
fn pg_bin(program: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("SIGNET_PG_BIN") {
        return Path::new(&dir).join(program);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join(program).exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .map(|bin| bin.join(program))
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Runs as this unprivileged user when we are root.
fn run_as() -> Option<&'static str> {
    if !nix::unistd::getuid().is_root() {
        return None;
    }
    Some(
        if nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .is_some()
        {
            "postgres"
        } else {
            "nobody"
        },
    )
}

/// `program args...`, as the unprivileged user when we are root, and ended
/// (fast shutdown) when the thread that started it ends: a cluster never
/// outlives the test process, even one killed mid-run.
fn command(program: &Path, user: Option<&str>) -> Command {
    let mut c = Command::new("setpriv");
    c.arg("--pdeathsig=INT");
    if let Some(user) = user {
        c.args([
            format!("--reuid={user}"),
            format!("--regid={user}"),
            "--init-groups".to_owned(),
        ]);
    }
    c.arg("--").arg(program);
    c
}

/// Removes the dirs of clusters whose test process died (no destructor ran):
/// old, and no live server in them.
fn sweep_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("sgpg"));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(120));
        let live = std::fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|pid| pid.lines().next()?.trim().parse::<i32>().ok())
            .is_some_and(|pid| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
            });
        if ours && old && !live {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A PostgreSQL cluster of our own; stopped (and its files removed) when
/// dropped.
pub struct Cluster {
    dir: TempDir,
    pub port: u16,
    user: Option<&'static str>,
    server: Arc<Mutex<Option<Child>>>,
}

impl Cluster {
    /// initdb on a temp dir.
    fn init() -> Cluster {
        sweep_stale_clusters();
        let dir = tempfile::Builder::new()
            .prefix("sgpg")
            .tempdir()
            .expect("tempdir");
        let user = run_as();
        if let Some(user) = user {
            let status = Command::new("chown")
                .args(["-R", user])
                .arg(dir.path())
                .status()
                .expect("chown the cluster dir");
            assert!(status.success(), "chown {user} {:?}", dir.path());
        }
        let out = command(&pg_bin("initdb"), user)
            .args(["--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"])
            .arg(format!("--username={SUPERUSER}"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .output()
            .expect("run initdb (is PostgreSQL installed? apt-get install postgresql)");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster {
            dir,
            port: crate::free_port(),
            user,
            server: Arc::new(Mutex::new(None)),
        }
    }

    /// initdb on a temp dir, then starts the server.
    pub fn start() -> Cluster {
        let cluster = Self::init();
        cluster.start_again();
        cluster
    }

    /// Like [`start`](Self::start), the server also speaking TLS with a
    /// certificate for `127.0.0.1` and `localhost` from a CA made here;
    /// returns the CA certificate (PEM) clients verify it with.
    pub fn start_with_tls() -> (Cluster, String) {
        let cluster = Self::init();
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Test database CA");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("server key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let data = cluster.dir.path().join("data");
        cluster.write_private(&data.join("server.crt"), cert.pem().as_bytes());
        cluster.write_private(&data.join("server.key"), key.serialize_pem().as_bytes());
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("postgresql.conf");
        std::io::Write::write_all(&mut conf, b"\nssl = on\n").expect("ssl = on");
        cluster.start_again();
        (cluster, ca_cert.pem())
    }

    /// `bytes` at `path`, 0600, owned by the server's user.
    fn write_private(&self, path: &Path, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, bytes).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        if let Some(user) = self.user {
            let status = Command::new("chown")
                .arg(user)
                .arg(path)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {user} {path:?}");
        }
    }

    /// Starts the server (after [`stop`](Self::stop)) on the same port.
    pub fn start_again(&self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))
            .expect("postgres log");
        let err = log.try_clone().expect("postgres log");
        let child = command(&pg_bin("postgres"), self.user)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=400",
                "-c",
                "shared_buffers=64MB",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start postgres");
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.wait_ready();
    }

    /// Blocking by design: called on a thread of its own or the blocking pool.
    #[allow(clippy::disallowed_methods)]
    fn wait_ready(&self) {
        for _ in 0..600 {
            let ready = Command::new(pg_bin("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            let exited = self
                .server
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "postgres exited: {}",
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("postgres did not become ready on port {}", self.port);
    }

    /// Fast shutdown: open connections are cut, the data stays.
    pub fn stop(&self) {
        let child = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
            let _ = child.wait();
        }
    }

    /// The URL to connect as the superuser to `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The admin URL (database `postgres`).
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// A new, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        fresh_database_on(&self.admin_url())
    }

    /// Where the cluster's files are (its log: `postgres.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `CREATE DATABASE` a uniquely named database on the cluster `admin_url`
/// names; its URL.
pub fn fresh_database_on(admin_url: &str) -> String {
    let name = format!("t_{}_{}", std::process::id(), hex_id(rand_bytes()));
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin_url, "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("run psql (postgresql-client)");
    assert!(
        out.status.success(),
        "CREATE DATABASE failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("admin URL {admin_url:?} names no database"),
    }
}

fn rand_bytes() -> [u8; 6] {
    let mut b = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("random bytes");
    b
}

fn hex_id(bytes: [u8; 6]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The run's shared cluster: `SIGNET_TEST_POSTGRES`, or one this process
/// starts once and keeps until it exits.
pub fn shared_admin_url() -> String {
    if let Ok(url) = std::env::var(ENV) {
        if !url.is_empty() {
            return url;
        }
    }
    static OWN: OnceLock<String> = OnceLock::new();
    OWN.get_or_init(|| {
        // Started from a thread that lives as long as the process, which
        // then ends the cluster's server with it (see `keep_until_exit`).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let cluster = Cluster::start();
            let _ = tx.send(cluster.admin_url());
            keep_until_exit(cluster);
        });
        rx.recv().expect("the test cluster started")
    })
    .clone()
}

/// Holds `cluster` until the process exits; its server then gets the
/// `--pdeathsig` signal (this thread started it).
fn keep_until_exit(cluster: Cluster) {
    let _cluster = cluster;
    loop {
        std::thread::park();
    }
}

/// A fresh database on the run's shared cluster; its URL.
pub fn fresh_database() -> String {
    fresh_database_on(&shared_admin_url())
}
