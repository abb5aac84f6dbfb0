//! The container attestor against real engines (issue 20): Podman and a
//! dockerd of the test's own start containers from a busybox rootfs with a
//! label and env; the Workload API client inside each gets the SVIDs of the
//! entries on its `container:` and `docker:` selectors, and the same client
//! run on the host does not. Containers under Kubernetes-style pod cgroups
//! (a Podman pod given one as its cgroup parent, bare runc) get
//! `k8s:pod-uid`. Each entry names few selectors, so each one served proves
//! them; the entries never to be served are made first, so by the time the
//! last served one arrives they have all been synced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use signet_tests::containers::{
    host_fetch, random_container_id, random_uid, require_container_tools, start_agent, Dockerd,
    OwnedCgroup, Podman, RuncContainer, Workload,
};
use signet_tests::{my_uid_selector, TestAgent, TestServer};

/// An entry: its path and selectors.
type Entry = (&'static str, Vec<String>);

/// Registers `refused` then `served` under the agent; the IDs of `served`.
fn register(
    server: &TestServer,
    agent: &TestAgent,
    refused: &[Entry],
    served: &[Entry],
) -> BTreeSet<String> {
    for (path, selectors) in refused.iter().chain(served) {
        let selectors: Vec<&str> = selectors.iter().map(String::as_str).collect();
        server.create_entry(&server.id(path), &agent.spiffe_id, &selectors, &[]);
    }
    served.iter().map(|(path, _)| server.id(path)).collect()
}

/// Served to any process of the test's uid, host or container: the host's
/// fetch proves the entries have reached the agent.
fn by_uid() -> Entry {
    ("/by-uid", vec![my_uid_selector()])
}

/// The host runs the same client and is served the uid entry alone.
fn assert_host_gets_only_the_uid_entry(server: &TestServer, agent: &TestAgent) {
    let (ids, stderr) = host_fetch(agent);
    assert_eq!(
        ids,
        BTreeSet::from([server.id("/by-uid")]),
        "a host process is served no container entry: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_podman_container_gets_the_svids_of_its_id_runtime_label_and_allowed_env_and_a_host_process_does_not(
) {
    require_container_tools();
    // Declared first, dropped last: after the containers using it.
    let workload = Workload::new();
    let podman = Podman::start().await;
    let server = TestServer::start().await;
    let agent = start_agent(&server, workload.dir(), Some(&podman.socket())).await;
    let id = podman.create(
        &workload,
        &agent.socket_path,
        &[
            "--label",
            "org.signet.team=payments",
            "--env",
            "SIGNET_TEST_ENV=blue",
            "--env",
            "SECRET_TOKEN=hunter2",
        ],
    );

    let (by_id, runtime) = (format!("container:id:{id}"), "container:runtime:podman");
    let label = "docker:label:org.signet.team:payments";
    let env = "docker:env:SIGNET_TEST_ENV:blue";
    let refused = [
        // Not allow-listed in the agent's config.
        (
            "/secret-env",
            vec!["docker:env:SECRET_TOKEN:hunter2".into()],
        ),
        (
            "/other-id",
            vec![format!("container:id:{}", random_container_id())],
        ),
        ("/docker", vec!["container:runtime:docker".into()]),
        (
            "/other-label",
            vec!["docker:label:org.signet.team:billing".into()],
        ),
    ];
    let served = [
        ("/by-id", vec![by_id.clone()]),
        ("/by-runtime", vec![runtime.into()]),
        ("/by-label", vec![label.into()]),
        ("/by-env", vec![env.into()]),
        (
            "/by-all",
            vec![by_id, runtime.into(), label.into(), env.into()],
        ),
        by_uid(),
    ];
    let want = register(&server, &agent, &refused, &served);
    podman.ok(&["start", &id]);

    assert_eq!(
        workload.served(&want).await,
        want,
        "{}",
        workload.diagnostics()
    );
    assert_host_gets_only_the_uid_entry(&server, &agent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_container_gets_the_svids_of_its_id_runtime_label_image_and_allowed_env_and_a_host_process_does_not(
) {
    require_container_tools();
    let workload = Workload::new();
    let dockerd = Dockerd::start().await;
    let image = dockerd.import(&workload, "signet-test:1");
    let server = TestServer::start().await;
    let agent = start_agent(&server, workload.dir(), Some(&dockerd.socket())).await;
    let id = dockerd.create(
        &workload,
        "signet-test:1",
        &agent.socket_path,
        &[
            "--label",
            "org.signet.team=payments",
            "--env",
            "SIGNET_TEST_ENV=green",
            "--env",
            "SECRET_TOKEN=hunter2",
        ],
    );

    let (by_id, runtime) = (format!("container:id:{id}"), "container:runtime:docker");
    let label = "docker:label:org.signet.team:payments";
    let env = "docker:env:SIGNET_TEST_ENV:green";
    let by_image = format!("docker:image_id:{image}");
    let refused = [
        (
            "/secret-env",
            vec!["docker:env:SECRET_TOKEN:hunter2".into()],
        ),
        (
            "/other-id",
            vec![format!("container:id:{}", random_container_id())],
        ),
        ("/podman", vec!["container:runtime:podman".into()]),
        (
            "/other-image",
            vec![format!("docker:image_id:sha256:{}", random_container_id())],
        ),
    ];
    let served = [
        ("/by-id", vec![by_id.clone()]),
        ("/by-runtime", vec![runtime.into()]),
        ("/by-label", vec![label.into()]),
        ("/by-env", vec![env.into()]),
        ("/by-image", vec![by_image.clone()]),
        (
            "/by-all",
            vec![by_id, runtime.into(), label.into(), env.into(), by_image],
        ),
        by_uid(),
    ];
    let want = register(&server, &agent, &refused, &served);
    dockerd.start_container(&id);

    assert_eq!(
        workload.served(&want).await,
        want,
        "{}",
        workload.diagnostics()
    );
    assert_host_gets_only_the_uid_entry(&server, &agent);
}

/// A Podman pod's cgroup is `<parent>/<pod id>`; a pod under a
/// `/kubepods/<qos>/pod<uid>` parent is placed as the kubelet places pods,
/// and its containers get that UID. A pod on the default parent
/// (`/libpod_parent`) carries no Kubernetes UID: its container is still
/// named by id and runtime.
#[tokio::test(flavor = "multi_thread")]
async fn a_container_in_a_podman_pod_under_a_kubepods_cgroup_gets_the_pod_uid_svid() {
    require_container_tools();
    let uid = random_uid();
    let parent = format!("/kubepods/besteffort/pod{uid}");
    // Dropped after the pods are gone.
    let _cgroup = OwnedCgroup(parent.clone());
    let (in_k8s_pod, in_plain_pod) = (Workload::new(), Workload::new());
    let podman = Podman::start().await;
    let server = TestServer::start().await;
    let agent = start_agent(&server, in_k8s_pod.dir(), Some(&podman.socket())).await;
    podman.ok(&[
        "pod",
        "create",
        "--network",
        "none",
        "--cgroup-parent",
        &parent,
        "--name",
        "signet-k8s",
    ]);
    podman.ok(&[
        "pod",
        "create",
        "--network",
        "none",
        "--name",
        "signet-plain",
    ]);
    let k8s_id = podman.create(&in_k8s_pod, &agent.socket_path, &["--pod", "signet-k8s"]);
    let plain_id = podman.create(
        &in_plain_pod,
        &agent.socket_path,
        &["--pod", "signet-plain"],
    );

    let pod_uid = format!("k8s:pod-uid:{uid}");
    let refused = [("/other-pod", vec![format!("k8s:pod-uid:{}", random_uid())])];
    let served_k8s = [
        ("/by-pod-uid", vec![pod_uid.clone()]),
        (
            "/k8s-pod-member",
            vec![
                format!("container:id:{k8s_id}"),
                "container:runtime:podman".into(),
                pod_uid,
            ],
        ),
        by_uid(),
    ];
    let served_plain = [(
        "/plain-pod-member",
        vec![
            format!("container:id:{plain_id}"),
            "container:runtime:podman".into(),
        ],
    )];
    let want_k8s = register(&server, &agent, &refused, &served_k8s);
    let want_plain =
        &register(&server, &agent, &[], &served_plain) | &BTreeSet::from([server.id("/by-uid")]);
    podman.ok(&["pod", "start", "signet-k8s"]);
    podman.ok(&["pod", "start", "signet-plain"]);

    assert_eq!(
        in_k8s_pod.served(&want_k8s).await,
        want_k8s,
        "{}",
        in_k8s_pod.diagnostics()
    );
    let cgroup = in_k8s_pod.cgroup().await;
    assert!(cgroup.contains(&format!("{parent}/")), "{cgroup}");
    assert_eq!(
        in_plain_pod.served(&want_plain).await,
        want_plain,
        "{}",
        in_plain_pod.diagnostics()
    );
    let cgroup = in_plain_pod.cgroup().await;
    assert!(cgroup.contains("/libpod_parent/"), "{cgroup}");
    assert_host_gets_only_the_uid_entry(&server, &agent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runc_container_under_a_kubepods_cgroup_gets_the_pod_uid_svid() {
    require_container_tools();
    let workload = Workload::new();
    let server = TestServer::start().await;
    let agent = start_agent(&server, workload.dir(), None).await;
    let (uid, id) = (random_uid(), random_container_id());
    let pod = format!("/kubepods/besteffort/pod{uid}");

    let refused = [
        ("/other-pod", vec![format!("k8s:pod-uid:{}", random_uid())]),
        ("/podman", vec!["container:runtime:podman".into()]),
    ];
    let served = [
        ("/by-pod-uid", vec![format!("k8s:pod-uid:{uid}")]),
        ("/by-id", vec![format!("container:id:{id}")]),
        // A cgroupfs kubepods path is read as a CRI runtime's: containerd.
        ("/by-runtime", vec!["container:runtime:containerd".into()]),
        by_uid(),
    ];
    let want = register(&server, &agent, &refused, &served);
    let _pod_cgroup = OwnedCgroup(pod.clone());
    let _container =
        RuncContainer::start(&workload, &agent.socket_path, &id, &format!("{pod}/{id}"));

    assert_eq!(
        workload.served(&want).await,
        want,
        "{}",
        workload.diagnostics()
    );
    assert_host_gets_only_the_uid_entry(&server, &agent);
}
