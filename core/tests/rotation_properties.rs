//! Property tests: the renewal time always falls inside the jitter window,
//! well before expiry, and moves forward with the jitter.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use signet_core::rotation::refresh_at;

/// Up to year ~2106, to the nanosecond.
fn instant() -> impl Strategy<Value = SystemTime> {
    (0u64..(1 << 32), 0u32..1_000_000_000)
        .prop_map(|(s, n)| SystemTime::UNIX_EPOCH + Duration::new(s, n))
}

/// From 1 ns to 100 years.
fn lifetime() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (1u64..1_000_000_000).prop_map(Duration::from_nanos),
        (1u64..100 * 365 * 86_400, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn jitter() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1.0f64..=1.0,
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
    ]
}

/// `lifetime * percent / 100`, exactly, in nanoseconds.
fn percent_of(lifetime: Duration, percent: u128) -> u128 {
    lifetime.as_nanos() * percent / 100
}

/// Float rounding of `Duration::mul_f64` on a long lifetime, well under a
/// microsecond; the window edges are checked to that precision.
const ROUNDING: u128 = 1_000;

proptest! {
    #[test]
    fn renewal_leaves_at_least_forty_percent_of_the_lifetime(
        issued_at in instant(), lifetime in lifetime(), jitter in jitter()
    ) {
        let not_after = issued_at + lifetime;
        let at = refresh_at(issued_at, not_after, jitter);
        let left = not_after.duration_since(at).map_err(|_| TestCaseError::fail("renews after expiry"))?;
        prop_assert!(left.as_nanos() >= percent_of(lifetime, 40), "left {left:?} of {lifetime:?}");
    }

    #[test]
    fn renewal_is_never_before_the_jitter_window(
        issued_at in instant(), lifetime in lifetime(), jitter in jitter()
    ) {
        let at = refresh_at(issued_at, issued_at + lifetime, jitter);
        let since = at.duration_since(issued_at).map_err(|_| TestCaseError::fail("renews before issue"))?;
        prop_assert!(
            since.as_nanos() + ROUNDING >= percent_of(lifetime, 45),
            "renews {since:?} into {lifetime:?}"
        );
        prop_assert!(since.as_nanos() <= percent_of(lifetime, 55) + ROUNDING);
    }

    #[test]
    fn later_jitter_never_renews_earlier(
        issued_at in instant(), lifetime in lifetime(),
        a in -2.0f64..=2.0, b in -2.0f64..=2.0
    ) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let not_after = issued_at + lifetime;
        prop_assert!(refresh_at(issued_at, not_after, lo) <= refresh_at(issued_at, not_after, hi));
    }
}
