//! Real-format cgroup files (v1 `name=systemd` and v2) and a D-Bus that
//! is not there (none runs in CI).

use std::time::Duration;

use super::*;
use crate::attest::workload::test_procfs::stat_line;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/attest/workload/cgroup_fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn system_services_v1_and_v2_are_named_by_their_unit() {
    assert_eq!(
        unit_from_cgroup(&fixture("systemd-service-v2.cgroup")).as_deref(),
        Some("nginx.service")
    );
    assert_eq!(
        unit_from_cgroup(&fixture("systemd-service-v1.cgroup")).as_deref(),
        Some("nginx.service")
    );
}

#[test]
fn a_user_service_is_named_by_its_own_unit_not_the_user_manager() {
    assert_eq!(
        unit_from_cgroup(&fixture("systemd-user-v2.cgroup")).as_deref(),
        Some("foo.service")
    );
    assert_eq!(
        unit_from_cgroup(&fixture("host-v1.cgroup")).as_deref(),
        Some("session-2.scope")
    );
}

#[test]
fn only_the_systemd_hierarchy_counts_and_the_root_is_no_unit() {
    // v1 with a controller hierarchy that names some other path.
    let text = "4:memory:/system.slice/other.service\n1:name=systemd:/system.slice/sshd.service\n";
    assert_eq!(unit_from_cgroup(text).as_deref(), Some("sshd.service"));
    assert_eq!(unit_from_cgroup(&fixture("root-v2.cgroup")), None);
    assert_eq!(unit_from_cgroup("0::/system.slice\n"), None);
    assert_eq!(unit_from_cgroup("0::/.service\n"), None);
}

#[tokio::test]
async fn an_unreachable_bus_yields_only_the_cgroup_selector() {
    let dir = tempfile::tempdir().unwrap();
    let proc_dir = dir.path().join("88");
    std::fs::create_dir_all(&proc_dir).unwrap();
    std::fs::write(proc_dir.join("stat"), stat_line(88, "nginx", 9)).unwrap();
    std::fs::write(
        proc_dir.join("cgroup"),
        fixture("systemd-service-v2.cgroup"),
    )
    .unwrap();
    let bus = UnitBus::new(
        BusAddress::Address(format!(
            "unix:path={}",
            dir.path().join("no-bus.sock").display()
        )),
        Duration::from_millis(500),
    );
    let attestor = SystemdAttestor::new(dir.path(), bus.clone());
    let peer = PeerInfo {
        pid: Some(88),
        uid: 0,
        gid: 0,
    };
    let got: Vec<String> = attestor
        .attest(&peer, AttestOptions::default())
        .await
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, ["systemd:id:nginx.service"]);
    assert!(bus.fragment_path("nginx.service").await.is_err());
}

#[tokio::test]
async fn a_process_outside_any_unit_gets_no_systemd_selector() {
    let dir = tempfile::tempdir().unwrap();
    let proc_dir = dir.path().join("88");
    std::fs::create_dir_all(&proc_dir).unwrap();
    std::fs::write(proc_dir.join("stat"), stat_line(88, "nginx", 9)).unwrap();
    std::fs::write(proc_dir.join("cgroup"), "0::/\n").unwrap();
    let bus = UnitBus::new(BusAddress::System, Duration::from_millis(100));
    let attestor = SystemdAttestor::new(dir.path(), bus);
    let peer = PeerInfo {
        pid: Some(88),
        uid: 0,
        gid: 0,
    };
    assert!(attestor
        .attest(&peer, AttestOptions::default())
        .await
        .unwrap()
        .is_empty());
}
