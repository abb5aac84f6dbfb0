use super::*;
use crate::attest::workload::test_procfs::stat_line;

const HASH: AttestOptions = AttestOptions { hash_binary: true };

struct Fixture {
    dir: tempfile::TempDir,
    binary: PathBuf,
}

fn fixture(pid: i32, start: u64, groups: &str, contents: &[u8]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let proc_dir = dir.path().join("proc").join(pid.to_string());
    std::fs::create_dir_all(&proc_dir).unwrap();
    std::fs::write(
        proc_dir.join("stat"),
        stat_line(4242, "my (odd) cmd", start),
    )
    .unwrap();
    std::fs::write(
        proc_dir.join("status"),
        format!("Name:\tcmd\nUid:\t1000\t1000\t1000\t1000\nGroups:\t{groups}\n"),
    )
    .unwrap();
    let binary = dir.path().join("bin-workload");
    std::fs::write(&binary, contents).unwrap();
    std::os::unix::fs::symlink(&binary, proc_dir.join("exe")).unwrap();
    Fixture { dir, binary }
}

fn strings(selectors: &[Selector]) -> Vec<String> {
    selectors.iter().map(|s| s.to_string()).collect()
}

#[test]
fn start_time_is_field_22_even_with_parentheses_in_the_name() {
    assert_eq!(
        parse_start_time(&stat_line(4242, "my (odd) cmd", 987654)),
        Some(987654)
    );
    assert_eq!(parse_start_time("garbage"), None);
}

#[test]
fn fixture_process_yields_every_unix_selector() {
    let f = fixture(4242, 100, "4 24 27", b"hello");
    let a = UnixAttestor::new(f.dir.path().join("proc"), 1024);
    let peer = PeerInfo {
        pid: Some(4242),
        uid: 1000,
        gid: 1000,
    };
    let got = strings(&a.attest_blocking(&peer, HASH).unwrap());
    for want in [
        "unix:uid:1000",
        "unix:gid:1000",
        "unix:supplementary_gid:4",
        "unix:supplementary_gid:24",
        "unix:supplementary_gid:27",
        &format!("unix:path:{}", f.binary.display()),
        // sha256("hello")
        "unix:sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    ] {
        assert!(got.iter().any(|g| g == want), "missing {want} in {got:?}");
    }
}

#[test]
fn binary_above_the_size_limit_is_not_hashed() {
    let f = fixture(7, 1, "", b"0123456789");
    let a = UnixAttestor::new(f.dir.path().join("proc"), 5);
    let peer = PeerInfo {
        pid: Some(7),
        uid: 1,
        gid: 1,
    };
    let got = strings(&a.attest_blocking(&peer, HASH).unwrap());
    assert!(
        got.iter().all(|s| !s.starts_with("unix:sha256:")),
        "{got:?}"
    );
    assert!(got.iter().any(|s| s.starts_with("unix:path:")));
}

#[test]
fn hash_is_cached_by_file_identity() {
    let f = fixture(7, 1, "", b"abc");
    let a = UnixAttestor::new(f.dir.path().join("proc"), 1024);
    let exe = f.dir.path().join("proc/7/exe");
    let first = a.inner.sha256(&exe).unwrap().unwrap();
    assert_eq!(a.inner.cache().len(), 1);
    assert_eq!(a.inner.sha256(&exe).unwrap().unwrap(), first);
    assert_eq!(a.inner.cache().len(), 1);
}

#[test]
fn vanished_process_fails_attestation() {
    let dir = tempfile::tempdir().unwrap();
    let a = UnixAttestor::new(dir.path(), 1024);
    let peer = PeerInfo {
        pid: Some(99),
        uid: 1,
        gid: 1,
    };
    assert_eq!(
        a.attest_blocking(&peer, HASH),
        Err(WorkloadAttestError::ProcessGone(99))
    );
    let no_pid = PeerInfo { pid: None, ..peer };
    assert_eq!(
        a.attest_blocking(&no_pid, HASH),
        Err(WorkloadAttestError::NoPid)
    );
}

#[test]
fn pid_reuse_during_attestation_fails() {
    let f = fixture(5, 10, "", b"x");
    let proc_dir = f.dir.path().join("proc/5");
    let reused = guard_pid_reuse(&proc_dir, 5, || {
        std::fs::write(proc_dir.join("stat"), stat_line(4242, "my (odd) cmd", 11)).unwrap();
        Ok(())
    });
    assert_eq!(reused, Err(WorkloadAttestError::PidReused(5)));

    let vanished = guard_pid_reuse(&proc_dir, 5, || {
        std::fs::remove_dir_all(&proc_dir).unwrap();
        Ok(())
    });
    assert_eq!(vanished, Err(WorkloadAttestError::ProcessGone(5)));
}

#[test]
fn the_test_process_itself_is_attested_from_real_proc() {
    let a = UnixAttestor::new("/proc", crate::config::DEFAULT_HASH_SIZE_LIMIT);
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let peer = PeerInfo {
        pid: Some(std::process::id() as i32),
        uid,
        gid,
    };
    let got = strings(&a.attest_blocking(&peer, HASH).unwrap());
    assert!(got.contains(&format!("unix:uid:{uid}")));
    let exe = std::env::current_exe().unwrap();
    assert!(
        got.contains(&format!("unix:path:{}", exe.display())),
        "{got:?}"
    );
    assert!(got.iter().any(|s| s.starts_with("unix:sha256:")));
}

#[test]
fn binary_is_not_hashed_unless_asked() {
    let f = fixture(8, 1, "", b"abc");
    let a = UnixAttestor::new(f.dir.path().join("proc"), 1024);
    let peer = PeerInfo {
        pid: Some(8),
        uid: 1,
        gid: 1,
    };
    let got = strings(&a.attest_blocking(&peer, AttestOptions::default()).unwrap());
    assert!(
        got.iter().all(|s| !s.starts_with("unix:sha256:")),
        "{got:?}"
    );
    assert!(got.iter().any(|s| s.starts_with("unix:path:")));
}

#[test]
fn a_same_size_rewrite_with_the_mtime_set_back_is_hashed_again() {
    let f = fixture(4242, 100, "", b"hello");
    let a = UnixAttestor::new(f.dir.path().join("proc"), 1024);
    let exe = f.dir.path().join("proc/4242/exe");
    let first = a.inner.sha256(&exe).unwrap().unwrap();
    let mtime = std::fs::metadata(&f.binary).unwrap().modified().unwrap();
    // Same size, new contents, and the mtime reset as `touch -d` would.
    std::fs::write(&f.binary, b"HELLO").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f.binary)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(
        std::fs::metadata(&f.binary).unwrap().modified().unwrap(),
        mtime
    );
    let second = a.inner.sha256(&exe).unwrap().unwrap();
    assert_ne!(
        second, first,
        "the ctime moved, so the cached hash is stale"
    );
    assert_eq!(second, hex::encode(Sha256::digest(b"HELLO")));
}

#[test]
fn a_path_names_the_executable_only_when_it_is_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::write(&a, b"x").unwrap();
    std::fs::write(&b, b"x").unwrap();
    let link = dir.path().join("exe");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    assert!(same_file(&link, &a));
    assert!(!same_file(&link, &b), "same contents, another file");
    assert!(!same_file(&link, &dir.path().join("missing")));
}
