//! Moving between the servers of an HA group: which server a connect round
//! tries first (stay where we are; after a failure, the next one, never
//! back to the first by preference), and how long a user of the connection
//! waits before trying again (not at all while some server of the group is
//! untried, the backoff once all have failed in a row).

use std::net::SocketAddr;
use std::time::Duration;

use super::addresses::Target;
use crate::backoff::Backoff;

/// The order a connect round tries `targets` in: from the current server
/// (the one after it when it failed), around the list once. A current
/// server no longer in the list (DNS moved it) or none yet: the configured
/// order from its start.
pub fn sweep_order(
    targets: &[Target],
    current: Option<SocketAddr>,
    current_failed: bool,
) -> impl Iterator<Item = &Target> {
    let start = match current.and_then(|c| targets.iter().position(|t| t.addr == c)) {
        Some(i) if current_failed => i + 1,
        Some(i) => i,
        None => 0,
    };
    targets.iter().cycle().skip(start).take(targets.len())
}

/// Retry pacing for a user of the connection (sync, renewal): a failed
/// server is left for the next one at once, and only when every server has
/// failed in a row is the backoff waited out, so failover costs a connect,
/// not a sleep, while a group that is down as a whole is not hammered.
#[derive(Debug, Clone)]
pub struct Pacing {
    backoff: Backoff,
    failed_in_row: usize,
}

impl Pacing {
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            failed_in_row: 0,
        }
    }

    /// The server in use failed (and the connector moved on); `servers` is
    /// how many the group has now.
    pub fn after_server_failure(&mut self, servers: usize) -> Duration {
        self.failed_in_row = self.failed_in_row.saturating_add(1);
        if self.failed_in_row < servers {
            return Duration::ZERO;
        }
        self.failed_in_row = 0;
        self.backoff.next_delay()
    }

    /// No server could be reached at all (a connect round already tried
    /// each), or the server refused: the backoff.
    pub fn after_failure(&mut self) -> Duration {
        self.failed_in_row = 0;
        self.backoff.next_delay()
    }

    /// Progress (a message, an answer): the next failure starts afresh.
    pub fn reset(&mut self) {
        self.failed_in_row = 0;
        self.backoff.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(n: u8) -> Vec<Target> {
        (1..=n)
            .map(|i| {
                let addr: SocketAddr = format!("10.0.0.{i}:8081").parse().unwrap();
                Target {
                    name: addr.to_string().into(),
                    addr,
                }
            })
            .collect()
    }

    fn order(targets: &[Target], current: Option<usize>, failed: bool) -> Vec<u8> {
        let current = current.map(|i| targets[i].addr);
        sweep_order(targets, current, failed)
            .map(|t| match t.addr.ip() {
                std::net::IpAddr::V4(ip) => ip.octets()[3],
                std::net::IpAddr::V6(_) => 0,
            })
            .collect()
    }

    #[test]
    fn the_first_connect_follows_the_configured_order() {
        assert_eq!(order(&targets(3), None, false), [1, 2, 3]);
    }

    #[test]
    fn a_healthy_server_is_kept_and_a_failed_one_is_left_for_the_next() {
        let t = targets(3);
        assert_eq!(order(&t, Some(1), false), [2, 3, 1], "reconnect: stay");
        assert_eq!(order(&t, Some(1), true), [3, 1, 2], "failed: next");
        assert_eq!(order(&t, Some(2), true), [1, 2, 3], "wraps around");
        assert_eq!(order(&targets(1), Some(0), true), [1], "a lone server");
    }

    #[test]
    fn a_server_dns_no_longer_names_starts_over_from_the_first() {
        let t = targets(3);
        let gone: SocketAddr = "10.9.9.9:8081".parse().unwrap();
        let got: Vec<_> = sweep_order(&t, Some(gone), true).collect();
        assert_eq!(got, t.iter().collect::<Vec<_>>());
        assert_eq!(sweep_order(&[], Some(gone), true).count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn failover_is_immediate_until_every_server_has_failed_in_a_row() {
        let mut pacing = Pacing::new(Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
        ));
        assert_eq!(pacing.after_server_failure(3), Duration::ZERO);
        assert_eq!(pacing.after_server_failure(3), Duration::ZERO);
        let third = pacing.after_server_failure(3);
        assert!(third >= Duration::from_millis(250), "{third:?}");
        // The next round moves at once again, then waits longer.
        assert_eq!(pacing.after_server_failure(3), Duration::ZERO);
        assert_eq!(pacing.after_server_failure(3), Duration::ZERO);
        let sixth = pacing.after_server_failure(3);
        assert!(sixth >= Duration::from_millis(500), "{sixth:?}");

        let start = tokio::time::Instant::now();
        tokio::time::sleep(sixth).await;
        // Paused time moves in whole milliseconds.
        assert!(start.elapsed() >= sixth && start.elapsed() < sixth + Duration::from_millis(1));

        pacing.reset();
        assert_eq!(pacing.after_server_failure(2), Duration::ZERO);
        let round = pacing.after_server_failure(2);
        assert!(round <= Duration::from_millis(500), "backoff started over");
    }

    #[test]
    fn a_single_server_backs_off_after_each_failure() {
        let mut pacing = Pacing::new(Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
        ));
        assert!(pacing.after_server_failure(1) >= Duration::from_millis(250));
        assert!(pacing.after_server_failure(1) >= Duration::from_millis(500));
        assert!(pacing.after_failure() >= Duration::from_secs(1));
    }
}
