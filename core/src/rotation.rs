//! When to renew a credential: at half its lifetime, moved by up to ±10% of
//! the half-life so a fleet issued together does not renew together.
//!
//! With a prefetch (`svid_prefetch`, for edge nodes that must ride out an
//! outage), earlier: as soon as less than the prefetch is left. A pure
//! function of its inputs; callers pick the jitter (random in production,
//! fixed in tests).

use std::time::{Duration, SystemTime};

/// How far, as a fraction of the half-life, jitter may move the renewal.
pub const JITTER_FRACTION: f64 = 0.10;

/// The time to renew a credential valid from `issued_at` to `not_after`.
///
/// `jitter` is clamped to [-1, 1]; -1 renews at 45% of the lifetime, 0 at
/// 50%, 1 at 55%. `issued_at` is when the credential became usable (the
/// back-dated notBefore would make short-lived credentials renew at once).
/// A credential already expired or with no lifetime renews at `issued_at`.
pub fn refresh_at(issued_at: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let Ok(lifetime) = not_after.duration_since(issued_at) else {
        return issued_at;
    };
    let jitter = if jitter.is_finite() {
        jitter.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let fraction = 0.5 * (1.0 + JITTER_FRACTION * jitter);
    issued_at + lifetime.mul_f64(fraction)
}

/// The least share of a lifetime kept before renewing, however large the
/// prefetch: a prefetch at or above the lifetime must not renew in a loop.
pub const MIN_RENEW_FRACTION: f64 = 0.05;

/// As [`refresh_at`], but once less than `prefetch` of the lifetime would
/// be left at that time, at the moment `prefetch` is left (never before
/// [`MIN_RENEW_FRACTION`] of the lifetime): a credential of 24 h with a
/// prefetch of 22 h is renewed every 2 h, so it outlives a 22 h outage.
/// Jitter moves it by up to ±10% of the time to that point.
pub fn refresh_at_prefetch(
    issued_at: SystemTime,
    not_after: SystemTime,
    jitter: f64,
    prefetch: Option<Duration>,
) -> SystemTime {
    let half = refresh_at(issued_at, not_after, jitter);
    let (Some(prefetch), Ok(lifetime)) = (prefetch, not_after.duration_since(issued_at)) else {
        return half;
    };
    let floor = lifetime.mul_f64(MIN_RENEW_FRACTION);
    let keep = lifetime.saturating_sub(prefetch).max(floor);
    let jitter = if jitter.is_finite() {
        jitter.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let early = issued_at + keep.mul_f64(1.0 + JITTER_FRACTION * jitter);
    half.min(early)
}

/// A uniformly random jitter in [-1, 1].
pub fn random_jitter() -> f64 {
    use rand::Rng;
    rand::thread_rng().gen_range(-1.0..=1.0)
}

/// How long to wait from `now` until `at` (zero when it has passed).
pub fn wait_until(now: SystemTime, at: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renews_at_half_life_without_jitter() {
        assert_eq!(refresh_at(t(1000), t(4600), 0.0), t(2800));
    }

    #[test]
    fn jitter_moves_renewal_by_at_most_ten_percent_of_half_life() {
        // 3600 s lifetime: half-life 1800 s, ±180 s.
        assert_eq!(refresh_at(t(1000), t(4600), -1.0), t(2620));
        assert_eq!(refresh_at(t(1000), t(4600), 1.0), t(2980));
        for j in [
            -5.0,
            -1.0,
            -0.3,
            0.0,
            0.7,
            1.0,
            9.0,
            f64::NAN,
            f64::INFINITY,
        ] {
            let at = refresh_at(t(1000), t(4600), j);
            assert!(at >= t(2620) && at <= t(2980), "jitter {j}");
        }
    }

    #[test]
    fn renewal_is_always_well_before_expiry() {
        for lifetime in [1u64, 2, 5, 60, 3600, 86400 * 365] {
            let at = refresh_at(t(0), t(lifetime), 1.0);
            assert!(at < t(lifetime), "lifetime {lifetime}");
        }
    }

    #[test]
    fn expired_or_empty_credentials_renew_at_once() {
        assert_eq!(refresh_at(t(100), t(50), 0.0), t(100));
        assert_eq!(refresh_at(t(100), t(100), 0.0), t(100));
    }

    #[test]
    fn a_prefetch_renews_once_less_than_it_is_left() {
        let day = 86_400;
        // 24 h with 22 h of prefetch: every 2 h (±12 min).
        assert_eq!(
            refresh_at_prefetch(t(0), t(day), 0.0, Some(Duration::from_secs(22 * 3600))),
            t(2 * 3600)
        );
        let late = refresh_at_prefetch(t(0), t(day), 1.0, Some(Duration::from_secs(22 * 3600)));
        assert_eq!(late, t(2 * 3600 + 720));
        // A small prefetch changes nothing: half-life comes first.
        assert_eq!(
            refresh_at_prefetch(t(0), t(day), 0.0, Some(Duration::from_secs(3600))),
            refresh_at(t(0), t(day), 0.0)
        );
        assert_eq!(refresh_at_prefetch(t(0), t(day), 0.0, None), t(day / 2));
        // One as long as the lifetime still waits 5% of it.
        assert_eq!(
            refresh_at_prefetch(t(0), t(1000), 0.0, Some(Duration::from_secs(5000))),
            t(50)
        );
        assert_eq!(
            refresh_at_prefetch(t(100), t(50), 0.0, Some(Duration::from_secs(10))),
            t(100)
        );
    }

    #[test]
    fn random_jitter_stays_in_range() {
        for _ in 0..1000 {
            let j = random_jitter();
            assert!((-1.0..=1.0).contains(&j));
        }
    }

    #[test]
    fn wait_until_never_negative() {
        assert_eq!(wait_until(t(10), t(5)), Duration::ZERO);
        assert_eq!(wait_until(t(5), t(10)), Duration::from_secs(5));
    }
}
