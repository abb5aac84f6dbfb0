use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::attest::workload::test_procfs::{stat_line, ReusesPid};

const PID: i32 = 4242;

/// A procfs with one process: its stat (start time) and exe link.
struct Proc {
    dir: tempfile::TempDir,
}

impl Proc {
    fn new(start_time: u64) -> Proc {
        let proc = Proc {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(proc.pid_dir()).unwrap();
        proc.set_start_time(start_time);
        proc.exec("bin-a");
        proc
    }

    fn pid_dir(&self) -> PathBuf {
        self.dir.path().join(PID.to_string())
    }

    fn set_start_time(&self, start: u64) {
        std::fs::write(self.pid_dir().join("stat"), stat_line(PID, "app", start)).unwrap();
    }

    /// Points exe at a (new) binary, as an exec would.
    fn exec(&self, binary: &str) {
        let target = self.dir.path().join(binary);
        std::fs::write(&target, binary).unwrap();
        let link = self.pid_dir().join("exe");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, link).unwrap();
    }
}

/// Counts its attestations; answers `unix:uid:<uid>`.
#[derive(Default)]
struct Counting {
    calls: AtomicUsize,
    /// Released once per attestation when set, to hold callers together.
    gate: Option<tokio::sync::Semaphore>,
}

#[async_trait]
impl WorkloadAttestor for Counting {
    async fn attest(
        &self,
        peer: &PeerInfo,
        _: AttestOptions,
    ) -> Result<Vec<Selector>, WorkloadAttestError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        Ok(vec![
            Selector::new("unix", &format!("uid:{}", peer.uid)).unwrap()
        ])
    }
}

fn peer(uid: u32) -> PeerInfo {
    PeerInfo {
        pid: Some(PID),
        uid,
        gid: 1000,
    }
}

fn cached(proc: &Proc, inner: Arc<Counting>) -> CachedAttestor {
    CachedAttestor::new(inner, proc.dir.path(), DEFAULT_TTL)
}

async fn attest(a: &CachedAttestor, uid: u32) -> Vec<String> {
    a.attest(&peer(uid), AttestOptions::default())
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_same_process_within_the_bound_is_attested_once() {
    let proc = Proc::new(100);
    let inner = Arc::new(Counting::default());
    let a = cached(&proc, inner.clone());
    assert_eq!(attest(&a, 1000).await, ["unix:uid:1000"]);
    tokio::time::advance(DEFAULT_TTL - Duration::from_millis(1)).await;
    assert_eq!(attest(&a, 1000).await, ["unix:uid:1000"]);
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_entry_is_not_used_after_its_bound() {
    let proc = Proc::new(100);
    let inner = Arc::new(Counting::default());
    let a = cached(&proc, inner.clone());
    attest(&a, 1000).await;
    tokio::time::advance(DEFAULT_TTL).await;
    attest(&a, 1000).await;
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_reused_pid_is_a_different_process() {
    let proc = Proc::new(100);
    let inner = Arc::new(Counting::default());
    let a = cached(&proc, inner.clone());
    attest(&a, 1000).await;
    proc.set_start_time(101);
    attest(&a, 1000).await;
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_process_that_execs_another_binary_is_attested_again() {
    let proc = Proc::new(100);
    let inner = Arc::new(Counting::default());
    let a = cached(&proc, inner.clone());
    attest(&a, 1000).await;
    proc.exec("bin-b");
    attest(&a, 1000).await;
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn other_socket_credentials_are_not_served_the_cached_selectors() {
    let proc = Proc::new(100);
    let inner = Arc::new(Counting::default());
    let a = cached(&proc, inner.clone());
    assert_eq!(attest(&a, 1000).await, ["unix:uid:1000"]);
    assert_eq!(attest(&a, 0).await, ["unix:uid:0"]);
    let hashed = AttestOptions { hash_binary: true };
    a.attest(&peer(1000), hashed).await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_process_replaced_during_attestation_is_refused_and_not_cached() {
    let proc = Proc::new(100);
    let a = CachedAttestor::new(
        Arc::new(ReusesPid {
            pid: PID,
            stat: proc.pid_dir().join("stat"),
            selector: "unix:uid:1000",
        }),
        proc.dir.path(),
        DEFAULT_TTL,
    );
    assert_eq!(
        a.attest(&peer(1000), AttestOptions::default()).await,
        Err(WorkloadAttestError::PidReused(PID))
    );
    // Start time 100 again: nothing was kept for it.
    proc.set_start_time(100);
    assert_eq!(
        a.attest(&peer(1000), AttestOptions::default()).await,
        Err(WorkloadAttestError::PidReused(PID))
    );
}

#[tokio::test]
async fn a_process_gone_or_without_pid_is_refused() {
    let proc = Proc::new(100);
    let a = cached(&proc, Arc::new(Counting::default()));
    let no_pid = PeerInfo {
        pid: None,
        ..peer(1)
    };
    assert_eq!(
        a.attest(&no_pid, AttestOptions::default()).await,
        Err(WorkloadAttestError::NoPid)
    );
    std::fs::remove_dir_all(proc.pid_dir()).unwrap();
    assert_eq!(
        a.attest(&peer(1), AttestOptions::default()).await,
        Err(WorkloadAttestError::ProcessGone(PID))
    );
}

#[tokio::test]
async fn callers_arriving_together_share_one_attestation() {
    let proc = Proc::new(100);
    let inner = Arc::new(Counting {
        gate: Some(tokio::sync::Semaphore::new(0)),
        ..Counting::default()
    });
    let a = Arc::new(cached(&proc, inner.clone()));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { attest(&a, 1000).await })
        })
        .collect();
    while inner.calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    if let Some(gate) = &inner.gate {
        gate.add_permits(8);
    }
    for c in callers {
        assert_eq!(c.await.unwrap(), ["unix:uid:1000"]);
    }
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_cache_holds_a_bounded_number_of_entries() {
    let proc = Proc::new(100);
    let a = cached(&proc, Arc::new(Counting::default()));
    for uid in 0..(MAX_ENTRIES as u32 + 10) {
        attest(&a, uid).await;
    }
    assert!(a.slots.lock().unwrap().len() <= MAX_ENTRIES);
}
