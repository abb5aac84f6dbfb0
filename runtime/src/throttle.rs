//! Log lines about what a peer can make happen at will (refused handshakes,
//! refused connections, a full descriptor table) are throttled: one line per
//! interval, saying how many were left out, so a flood of connections cannot
//! become a flood of journal lines.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The interval used by the daemons.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were
    /// left out since the last one; `None` when this one is left out.
    pub fn permit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.last {
            Some(last) if now.duration_since(last) < self.interval => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.suppressed))
            }
        }
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new(DEFAULT_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_counting_those_left_out() {
        let t = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(t.permit(), Some(0));
        for _ in 0..5 {
            assert_eq!(t.permit(), None);
        }
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(t.permit(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(t.permit(), Some(6));
        assert_eq!(t.permit(), None);
    }
}
