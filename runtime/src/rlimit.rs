//! The open-file limit. A daemon that serves many peers raises its soft
//! limit to the hard one at start (systemd's default soft limit is 1024,
//! which a few hundred idle clients exhaust), and sizes its connection caps
//! from what it got, so it refuses connections before the kernel refuses
//! it descriptors.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The soft and hard open-file limits after raising.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; on failure the limit
/// stays as it was and is returned as such.
pub fn raise_nofile() -> Result<NoFile, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit");
            return Ok(NoFile { soft, hard });
        }
    }
    Ok(NoFile { soft: hard, hard })
}

/// How many connections fit under `nofile` when each takes
/// `fds_per_connection` descriptors and `reserve` stay free for files,
/// the datastore and the listeners.
pub fn connections_within(nofile: u64, fds_per_connection: u64, reserve: u64) -> usize {
    let usable = nofile.saturating_sub(reserve) / fds_per_connection.max(1);
    usize::try_from(usable).unwrap_or(usize::MAX).max(1)
}

/// Raises the open-file limit and returns `max_connections`, lowered to
/// what fits under it (see [`connections_within`]); `listener` names it in
/// the log line that says so.
pub fn raise_and_fit(
    max_connections: usize,
    fds_per_connection: u64,
    reserve: u64,
    listener: &str,
) -> usize {
    match raise_nofile() {
        Ok(nofile) => {
            let fit = connections_within(nofile.soft, fds_per_connection, reserve);
            if fit < max_connections {
                tracing::info!(
                    nofile = nofile.soft,
                    max_connections = fit,
                    "the open-file limit caps {listener} connections"
                );
                return fit;
            }
            max_connections
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            max_connections
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit() {
        let raised = raise_nofile().unwrap();
        assert_eq!(raised.soft, raised.hard);
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!((soft, hard), (raised.soft, raised.hard));
    }

    #[test]
    fn connections_leave_the_reserve_free() {
        assert_eq!(connections_within(1024, 2, 128), 448);
        assert_eq!(connections_within(1024, 1, 128), 896);
        assert_eq!(connections_within(100, 1, 128), 1);
        assert_eq!(connections_within(u64::MAX, 1, 0), usize::MAX);
    }
}
