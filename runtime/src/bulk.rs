//! Bulk computation (key generation, batch signing, checking what was
//! signed, encoding the agent's cache for disk) on threads of their own
//! at a lower scheduling priority, one per core. A cold start's keys and
//! signatures are seconds of CPU on every core; at equal priority the
//! threads that carry a ban, a revocation or a Workload API reply wait out
//! scheduler slices behind them (tens of milliseconds on two cores). Niced,
//! bulk work still takes every idle cycle, but yields the core at once to
//! whatever else in the daemon wakes up. Under a seccomp filter (the
//! packaged units) they keep normal priority: see `lower_priority`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

/// How much lower than the daemon's own priority bulk threads run (the
/// kernel caps the result at 19). At +10 a woken thread of the daemon gets
/// the core ahead of a bulk one; other processes still get their share.
const NICE_INCREMENT: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("the bulk worker threads could not be started: {0}")]
    NoWorkers(String),
    #[error("the bulk job panicked")]
    Panicked,
}

/// Queues `work` for a bulk thread at once (not at first poll, so several
/// jobs queued before any is awaited run side by side) and returns its
/// result's future, which waits without blocking the runtime. Jobs start in
/// the order they were queued, at most one per core at a time.
pub fn run<T, F>(work: F) -> impl Future<Output = Result<T, BulkError>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(work)) {
            let _ = done.send(value);
        }
    });
    let queued = pool().and_then(|queue| {
        queue
            .send(job)
            .map_err(|_| BulkError::NoWorkers("the workers have stopped".into()))
    });
    async move {
        queued?;
        result.await.map_err(|_| BulkError::Panicked)
    }
}

/// The queue of the process's bulk threads, started on first use.
fn pool() -> Result<&'static mpsc::Sender<Job>, BulkError> {
    static POOL: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
    POOL.get_or_init(start)
        .as_ref()
        .map_err(|e| BulkError::NoWorkers(e.clone()))
}

fn start() -> Result<mpsc::Sender<Job>, String> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let (queue, jobs) = mpsc::channel::<Job>();
    let jobs = Arc::new(Mutex::new(jobs));
    for i in 0..threads {
        let jobs = jobs.clone();
        std::thread::Builder::new()
            .name(format!("bulk-{i}"))
            .spawn(move || work(&jobs))
            .map_err(|e| format!("starting bulk thread {i}: {e}"))?;
    }
    Ok(queue)
}

fn work(jobs: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    loop {
        // One idle worker waits on the queue, the others on the lock.
        let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match next {
            Ok(job) => job(),
            Err(mpsc::RecvError) => return,
        }
    }
}

/// Lowers this thread's priority (Linux keeps a nice value per thread), unless
/// a seccomp filter is in place: the packaged units forbid `setpriority`
/// (`~@resources`), and a forbidden call kills the daemon with SIGSYS. Under
/// them bulk threads run at normal priority and only their number bounds them.
fn lower_priority() {
    static SAID: std::sync::Once = std::sync::Once::new();
    match std::fs::read_to_string("/proc/thread-self/status") {
        Ok(status) if !seccomp_filtered(&status) => {
            if let Err(e) = rustix::process::nice(NICE_INCREMENT) {
                SAID.call_once(
                    || tracing::warn!(error = %e, "bulk threads run at normal priority"),
                );
            }
        }
        _ => SAID.call_once(|| {
            tracing::info!(
                "bulk threads run at normal priority (a seccomp filter may forbid lowering it)"
            )
        }),
    }
}

/// Whether `/proc/<pid>/status` says a seccomp filter applies (mode 2), or
/// does not say at all.
fn seccomp_filtered(status: &str) -> bool {
    let mode = status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .map(str::trim);
    mode != Some("0")
}

#[cfg(test)]
mod tests;
