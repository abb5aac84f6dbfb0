use super::*;

#[tokio::test]
async fn returns_what_the_work_computed() {
    let sum = run(|| (1..=100u32).sum::<u32>()).await.unwrap();
    assert_eq!(sum, 5050);
}

#[tokio::test]
async fn a_panicking_job_is_an_error_and_the_pool_keeps_working() {
    let failed = run(|| -> u32 { panic!("bad job") }).await;
    assert!(matches!(failed, Err(BulkError::Panicked)), "{failed:?}");
    for _ in 0..8 {
        assert_eq!(run(|| 7).await.unwrap(), 7);
    }
}

#[test]
fn a_seccomp_filter_or_an_unknown_mode_keeps_the_priority() {
    assert!(!seccomp_filtered(
        "Name:\tsignet\nSeccomp:\t0\nSeccomp_filters:\t0\n"
    ));
    assert!(seccomp_filtered(
        "Name:\tsignet\nSeccomp:\t2\nSeccomp_filters:\t1\n"
    ));
    assert!(seccomp_filtered("Name:\tsignet\n"));
}

#[tokio::test]
async fn bulk_threads_run_below_the_daemons_priority() {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    if seccomp_filtered(&status) {
        return; // they stay at normal priority by design
    }
    let ours = rustix::process::getpriority_process(None).unwrap();
    let theirs = run(|| rustix::process::getpriority_process(None).unwrap())
        .await
        .unwrap();
    assert_eq!(theirs, (ours + NICE_INCREMENT).min(19));
    // The caller's own thread is untouched.
    assert_eq!(rustix::process::getpriority_process(None).unwrap(), ours);
}

#[tokio::test]
async fn jobs_queued_together_run_side_by_side() {
    // Two jobs that each wait for the other: they finish only if both are
    // queued before either is awaited and run on threads of their own.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return;
    }
    let (a_tx, a_rx) = mpsc::channel::<()>();
    let (b_tx, b_rx) = mpsc::channel::<()>();
    let first = run(move || {
        a_tx.send(()).unwrap();
        b_rx.recv_timeout(std::time::Duration::from_secs(10))
            .is_ok()
    });
    let second = run(move || {
        b_tx.send(()).unwrap();
        a_rx.recv_timeout(std::time::Duration::from_secs(10))
            .is_ok()
    });
    assert!(first.await.unwrap());
    assert!(second.await.unwrap());
}
