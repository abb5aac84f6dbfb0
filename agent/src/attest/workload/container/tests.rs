//! Cgroup files in the real formats of each runtime (v1 and v2), and the
//! Engine API client against a fake engine on a temp Unix socket replaying
//! answers in the shape of the real `GET /containers/<id>/json` (the real
//! engines run in tests/tests/containers.rs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::cgroup::Runtime;
use super::docker::{DockerClient, EngineError};
use super::*;
use crate::attest::workload::cgroup::parse;
use crate::attest::workload::test_procfs::stat_line;

const ID: &str = "3f1c8c5e9a0b4d7e8f2a1b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70";
const POD: &str = "6f2a3b4c-1d2e-4f50-8a9b-0c1d2e3f4a5b";

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/attest/workload/cgroup_fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn selectors_of(name: &str) -> Vec<String> {
    let text = fixture(name);
    find_container(&parse(&text))
        .map(|info| {
            container_selectors(&info)
                .iter()
                .map(|s| s.to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn expect(runtime: &str, pod: bool) -> Vec<String> {
    let mut v = vec![
        format!("container:id:{ID}"),
        format!("container:runtime:{runtime}"),
    ];
    if pod {
        v.push(format!("k8s:pod-uid:{POD}"));
    }
    v
}

#[test]
fn docker_cgroups_v1_and_v2_name_the_container() {
    assert_eq!(selectors_of("docker-v1.cgroup"), expect("docker", false));
    assert_eq!(selectors_of("docker-v2.cgroup"), expect("docker", false));
}

#[test]
fn containerd_cri_cgroups_v1_and_v2_name_the_container_and_pod() {
    assert_eq!(
        selectors_of("containerd-v1.cgroup"),
        expect("containerd", true)
    );
    assert_eq!(
        selectors_of("containerd-v2.cgroup"),
        expect("containerd", true)
    );
}

#[test]
fn podman_cgroups_v1_v2_and_rootless_name_the_container() {
    assert_eq!(selectors_of("podman-v1.cgroup"), expect("podman", false));
    assert_eq!(selectors_of("podman-v2.cgroup"), expect("podman", false));
    assert_eq!(
        selectors_of("podman-rootless-v2.cgroup"),
        expect("podman", false)
    );
}

#[test]
fn crio_cgroups_v1_and_v2_name_the_container_and_pod() {
    assert_eq!(selectors_of("crio-v1.cgroup"), expect("crio", true));
    assert_eq!(selectors_of("crio-v2.cgroup"), expect("crio", true));
}

#[test]
fn processes_in_no_container_get_no_container_selectors() {
    for name in [
        "host-v1.cgroup",
        "root-v2.cgroup",
        "systemd-service-v1.cgroup",
        "systemd-service-v2.cgroup",
        "systemd-user-v2.cgroup",
    ] {
        assert_eq!(selectors_of(name), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn conmon_scopes_and_short_ids_are_not_containers() {
    let conmon = format!("0::/machine.slice/libpod-conmon-{ID}.scope\n");
    assert_eq!(find_container(&parse(&conmon)), None);
    let crio_conmon = format!("0::/kubepods.slice/crio-conmon-{ID}.scope\n");
    assert_eq!(find_container(&parse(&crio_conmon)), None);
    assert_eq!(find_container(&parse("0::/docker/abc123\n")), None);
    let upper = format!("0::/docker/{}\n", ID.to_uppercase());
    assert_eq!(find_container(&parse(&upper)), None);
}

#[test]
fn guaranteed_pods_and_nested_containers() {
    let inner = "a".repeat(64);
    let nested = format!("12:memory:/docker/{ID}/docker/{inner}\n");
    let info = find_container(&parse(&nested)).unwrap();
    assert_eq!(info.id, inner, "the innermost container");
    assert_eq!(info.runtime, Runtime::Docker);
    let guaranteed = format!(
        "0::/kubepods.slice/kubepods-pod{}.slice/docker-{ID}.scope\n",
        POD.replace('-', "_")
    );
    let info = find_container(&parse(&guaranteed)).unwrap();
    assert_eq!(info.pod_uid.as_deref(), Some(POD));
    assert_eq!(info.runtime, Runtime::Docker);
}

/// What `find_container` makes of a fixture: (id, runtime, pod uid).
fn found_in(name: &str) -> Option<(String, Runtime, Option<String>)> {
    let text = fixture(name);
    find_container(&parse(&text)).map(|i| (i.id, i.runtime, i.pod_uid))
}

fn found(
    id: &str,
    runtime: Runtime,
    pod: Option<&str>,
) -> Option<(String, Runtime, Option<String>)> {
    Some((id.to_owned(), runtime, pod.map(str::to_owned)))
}

// The `*-hybrid` fixtures are the files real engines wrote in issue 20's
// end-to-end runs: a hybrid host (v1 controllers, `name=systemd` and the
// unified `0::` line all carry the path), runc, no systemd (cgroupfs).

#[test]
fn real_podman_docker_and_runc_cgroups_on_a_hybrid_host_name_the_container() {
    assert_eq!(
        found_in("podman-cgroupfs-hybrid.cgroup"),
        found(
            "d05137b696d0b97d2edee3286df0a46f49f7d1f9a468b376dbf2d88a9d4cff47",
            Runtime::Podman,
            None
        )
    );
    assert_eq!(
        found_in("docker-cgroupfs-hybrid.cgroup"),
        found(
            "5e8141ce222761fd2321beeeb944830458b74310c0d159ac475a0f807dd20e43",
            Runtime::Docker,
            None
        )
    );
    // runc alone under a kubelet-style cgroupfs path: read as a CRI
    // runtime's container, in its pod.
    assert_eq!(
        found_in("runc-kubepods-hybrid.cgroup"),
        found(
            "a1b6eaee46bb431195c9716b61355cf437ee2323a64d4534bcf1d08bad9dc7c7",
            Runtime::Containerd,
            Some(POD)
        )
    );
    assert_eq!(
        found_in("host-hybrid.cgroup"),
        None,
        "a 32-hex cgroup is no container"
    );
}

#[test]
fn real_podman_pods_give_a_pod_uid_only_under_a_kubepods_parent() {
    // `/libpod_parent/<pod id>/libpod-<id>`: a pod id is no Kubernetes UID.
    assert_eq!(
        found_in("podman-pod-hybrid.cgroup"),
        found(
            "962867bd4984eff107831548f60420fe917f089860174cb6fe22751ab85ec7ef",
            Runtime::Podman,
            None
        )
    );
    // `podman pod create --cgroup-parent /kubepods/besteffort/pod<uid>`.
    assert_eq!(
        found_in("podman-pod-kubepods-hybrid.cgroup"),
        found(
            "803bf69a6eb120716ae822d03b65815aa77ae9789201a995ae3f4af6a431ac99",
            Runtime::Podman,
            Some(POD)
        )
    );
}

fn procfs_with(pid: i32, cgroup: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let proc_dir = dir.path().join(pid.to_string());
    std::fs::create_dir_all(&proc_dir).unwrap();
    std::fs::write(proc_dir.join("stat"), stat_line(77, "app", 5)).unwrap();
    std::fs::write(proc_dir.join("cgroup"), cgroup).unwrap();
    dir
}

fn peer(pid: i32) -> PeerInfo {
    PeerInfo {
        pid: Some(pid),
        uid: 1000,
        gid: 1000,
    }
}

/// `docker inspect` as the Engine API returns it (trimmed of the many
/// fields the attestor ignores, not of its shape).
fn inspect_json() -> String {
    format!(
        r#"{{"Id":"{ID}","Created":"2024-05-02T09:14:11.504785813Z","Path":"/usr/local/bin/app","Args":["--serve"],"State":{{"Status":"running","Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":4242,"ExitCode":0,"Error":"","StartedAt":"2024-05-02T09:14:11.877366121Z","FinishedAt":"0001-01-01T00:00:00Z"}},"Image":"sha256:9c7a54a9a43cca047013b82af109fe963fde787f63f9e016fdc3384500c2823d","ResolvConfPath":"/var/lib/docker/containers/{ID}/resolv.conf","HostnamePath":"/var/lib/docker/containers/{ID}/hostname","Name":"/billing","RestartCount":0,"Driver":"overlay2","Platform":"linux","HostConfig":{{"NetworkMode":"bridge","RestartPolicy":{{"Name":"no","MaximumRetryCount":0}}}},"Config":{{"Hostname":"3f1c8c5e9a0b","Domainname":"","User":"app","AttachStdin":false,"Tty":false,"Env":["APP_ENV=production","DB_PASSWORD=hunter2","PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["--serve"],"Image":"registry.example.org/billing:1.4.2","Volumes":null,"WorkingDir":"/srv","Entrypoint":["/usr/local/bin/app"],"OnBuild":null,"Labels":{{"com.example.team":"payments","org.opencontainers.image.version":"1.4.2"}}}},"NetworkSettings":{{"Bridge":"","SandboxID":"5b2c","Ports":{{}},"IPAddress":"172.17.0.2"}}}}"#
    )
}

/// How the fake engine answers.
#[derive(Clone, Copy)]
enum Reply {
    ContentLength,
    Chunked,
    NotFound,
    Never,
    /// These bytes, then the connection closes.
    Raw(&'static str),
}

struct FakeEngine {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    requests: Arc<AtomicUsize>,
    paths: Arc<std::sync::Mutex<Vec<String>>>,
}

fn fake_engine(reply: Reply) -> FakeEngine {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, seen) = (requests.clone(), paths.clone());
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                seen.lock()
                    .unwrap()
                    .push(head.lines().next().unwrap().to_owned());
                let body = inspect_json();
                let answer = match reply {
                    Reply::ContentLength => format!(
                        "HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\nContent-Type: application/json\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: Docker/26.1.3 (linux)\r\nDate: Thu, 02 May 2024 09:20:00 GMT\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                    Reply::Chunked => {
                        let (a, b) = body.split_at(100);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nServer: Libpod/5.0.2 (linux)\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                            a.len(),
                            b.len()
                        )
                    }
                    Reply::NotFound => {
                        let msg = format!("{{\"message\":\"No such container: {ID}\"}}\n");
                        format!(
                            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{msg}",
                            msg.len()
                        )
                    }
                    Reply::Never => {
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                    Reply::Raw(raw) => raw.to_owned(),
                };
                conn.write_all(answer.as_bytes()).await.unwrap();
            });
        }
    });
    FakeEngine {
        _dir: dir,
        socket,
        requests,
        paths,
    }
}

fn strings(selectors: &[Selector]) -> Vec<String> {
    selectors.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn engine_labels_image_and_only_allow_listed_env_become_selectors() {
    let engine = fake_engine(Reply::ContentLength);
    let procfs = procfs_with(77, &fixture("docker-v2.cgroup"));
    let attestor = ContainerAttestor::new(procfs.path()).with_docker(
        DockerClient::new(&engine.socket, Duration::from_secs(2)),
        vec!["APP_ENV".into()],
    );
    let got = strings(
        &attestor
            .attest(&peer(77), AttestOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(
        got,
        [
            format!("container:id:{ID}"),
            "container:runtime:docker".to_owned(),
            "docker:image_id:sha256:9c7a54a9a43cca047013b82af109fe963fde787f63f9e016fdc3384500c2823d".to_owned(),
            "docker:label:com.example.team:payments".to_owned(),
            "docker:label:org.opencontainers.image.version:1.4.2".to_owned(),
            "docker:env:APP_ENV:production".to_owned(),
        ]
    );
    assert!(
        !got.iter().any(|s| s.contains("hunter2")),
        "env not allow-listed"
    );
    assert_eq!(
        engine.paths.lock().unwrap().as_slice(),
        [format!("GET /containers/{ID}/json HTTP/1.1")]
    );
}

#[tokio::test]
async fn podman_chunked_answers_are_decoded() {
    let engine = fake_engine(Reply::Chunked);
    let client = DockerClient::new(&engine.socket, Duration::from_secs(2));
    let inspect = client.inspect(ID).await.unwrap();
    assert_eq!(
        inspect.config.labels.as_ref().unwrap()["com.example.team"],
        "payments"
    );
}

#[tokio::test]
async fn a_second_lookup_of_the_same_container_is_served_from_the_cache() {
    let engine = fake_engine(Reply::ContentLength);
    let client = DockerClient::new(&engine.socket, Duration::from_secs(2));
    let first = client.inspect(ID).await.unwrap();
    let second = client.inspect(ID).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(engine.requests.load(Ordering::SeqCst), 1, "one API call");
}

#[tokio::test]
async fn an_engine_that_never_answers_times_out_and_leaves_the_cgroup_selectors() {
    let engine = fake_engine(Reply::Never);
    let client = DockerClient::new(&engine.socket, Duration::from_millis(200));
    let started = tokio::time::Instant::now();
    assert_eq!(
        client.inspect(ID).await,
        Err(EngineError::Timeout(Duration::from_millis(200)))
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let procfs = procfs_with(77, &fixture("podman-v2.cgroup"));
    let attestor =
        ContainerAttestor::new(procfs.path()).with_docker(client, vec!["APP_ENV".into()]);
    let got = strings(
        &attestor
            .attest(&peer(77), AttestOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(got, expect("podman", false));
}

#[tokio::test]
async fn unknown_container_and_missing_socket_are_errors_not_selectors() {
    let engine = fake_engine(Reply::NotFound);
    let client = DockerClient::new(&engine.socket, Duration::from_secs(2));
    assert_eq!(client.inspect(ID).await, Err(EngineError::Status(404)));
    let gone = DockerClient::new("/nonexistent/docker.sock", Duration::from_secs(1));
    assert!(matches!(
        gone.inspect(ID).await,
        Err(EngineError::Connect(..))
    ));
}

#[tokio::test]
async fn a_host_process_gets_no_container_selectors_and_no_engine_call() {
    let engine = fake_engine(Reply::ContentLength);
    let procfs = procfs_with(77, &fixture("host-v1.cgroup"));
    let attestor = ContainerAttestor::new(procfs.path()).with_docker(
        DockerClient::new(&engine.socket, Duration::from_secs(2)),
        Vec::new(),
    );
    let got = attestor
        .attest(&peer(77), AttestOptions::default())
        .await
        .unwrap();
    assert!(got.is_empty());
    assert_eq!(engine.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_http_answers_are_refused_and_a_close_delimited_one_is_read() {
    let inspect = |raw| async move {
        let engine = fake_engine(Reply::Raw(raw));
        DockerClient::new(&engine.socket, Duration::from_secs(2))
            .inspect(ID)
            .await
    };
    for raw in [
        "garbage\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nx",
        // Larger than an inspect answer may be.
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n{}",
    ] {
        assert!(
            matches!(inspect(raw).await, Err(EngineError::Malformed(_))),
            "{raw:?}"
        );
    }
    let read = inspect("HTTP/1.1 200 OK\r\n\r\n{\"Image\":\"sha256:ab\"}").await;
    assert_eq!(read.unwrap().image, "sha256:ab");
}

#[test]
fn a_container_without_an_image_gets_no_image_id_selector() {
    let inspect = |image: &str| -> super::docker::Inspect {
        serde_json::from_str(&format!(r#"{{"Image":"{image}","Config":{{}}}}"#)).unwrap()
    };
    assert_eq!(
        inspect("sha256:9c7a54a9").selector_values(&[]),
        ["image_id:sha256:9c7a54a9"]
    );
    for none in ["sha256:", ""] {
        assert!(inspect(none).selector_values(&[]).is_empty(), "{none:?}");
    }
}
