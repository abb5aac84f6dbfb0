//! Reading another user's `/proc/<pid>/exe` takes CAP_SYS_PTRACE (root
//! without it is refused too). Without it the `unix:path` and `unix:sha256`
//! selectors of other users' processes are silently absent, so entries
//! naming them never match: said once at start, at WARN, and once more at
//! the first refusal if the start-up check could not tell.

use std::sync::atomic::{AtomicBool, Ordering};

const CAP_SYS_PTRACE: u32 = 19;

static WARNED: AtomicBool = AtomicBool::new(false);

/// At start: warns when this process's effective set lacks CAP_SYS_PTRACE.
pub fn warn_if_missing() {
    match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => {
            if has_cap_sys_ptrace(&status) == Some(false) {
                warn_once("the agent runs without CAP_SYS_PTRACE");
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot read /proc/self/status"),
    }
}

/// An `exe` link another process's owner keeps from us.
pub fn note_denied(pid: i32) {
    warn_once(&format!(
        "reading /proc/{pid}/exe was refused (CAP_SYS_PTRACE missing?)"
    ));
}

fn warn_once(why: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "{why}: unix:path and unix:sha256 selectors of other users' processes are unavailable, and entries that need them will not match; grant CAP_SYS_PTRACE (the packaged unit's AmbientCapabilities=CAP_SYS_PTRACE)"
        );
    }
}

/// Bit 19 of the `CapEff:` line; `None` when there is no such line.
fn has_cap_sys_ptrace(status: &str) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & (1 << CAP_SYS_PTRACE) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_sys_ptrace_is_read_from_the_effective_set() {
        let with = "Name:\tsignet-agent\nCapInh:\t0000000000000000\nCapEff:\t0000000000080000\n";
        let without = "CapPrm:\t0000000000080000\nCapEff:\t0000000000000000\n";
        assert_eq!(has_cap_sys_ptrace(with), Some(true));
        assert_eq!(has_cap_sys_ptrace(without), Some(false));
        assert_eq!(
            has_cap_sys_ptrace("CapEff:\t000001ffffffffff\n"),
            Some(true)
        );
        assert_eq!(has_cap_sys_ptrace("Name:\tx\n"), None);
        assert_eq!(has_cap_sys_ptrace("CapEff:\tzz\n"), None);
    }
}
