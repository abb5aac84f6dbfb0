use std::time::Duration;

use tokio::time::Instant;

use super::*;

const TEN: Rate = Rate {
    per_second: 10.0,
    burst: 20,
};

#[tokio::test(start_paused = true)]
async fn a_burst_then_the_rate_and_a_retry_hint() {
    let l = KeyedLimiter::new(TEN);
    for _ in 0..20 {
        l.try_take(&"a", 1).unwrap();
    }
    let e = l.try_take(&"a", 1).unwrap_err();
    assert_eq!(e.retry_after, Duration::from_millis(100));
    // Another key is untouched.
    l.try_take(&"b", 20).unwrap();
    tokio::time::advance(Duration::from_millis(100)).await;
    l.try_take(&"a", 1).unwrap();
    assert!(l.try_take(&"a", 1).is_err());
    // A full second refills ten, not more than asked for.
    tokio::time::advance(Duration::from_secs(1)).await;
    l.try_take(&"a", 10).unwrap();
    assert!(l.try_take(&"a", 1).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_request_above_the_burst_takes_the_whole_bucket() {
    let l = KeyedLimiter::new(TEN);
    l.try_take(&1, 500).unwrap();
    let e = l.try_take(&1, 500).unwrap_err();
    assert_eq!(e.retry_after, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn off_never_refuses() {
    let l = KeyedLimiter::new(Rate::OFF);
    for _ in 0..10_000 {
        l.try_take(&"a", 100).unwrap();
    }
    assert_eq!(l.tracked(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_throttle_cuts_the_rate_until_it_ends() {
    let l = KeyedLimiter::new(Rate {
        per_second: 100.0,
        burst: 100,
    });
    l.throttle(&"a", Instant::now() + Duration::from_secs(60));
    // A tenth of the burst, then a tenth of the rate.
    l.try_take(&"a", 10).unwrap();
    let e = l.try_take(&"a", 1).unwrap_err();
    assert_eq!(e.retry_after, Duration::from_millis(100));
    tokio::time::advance(Duration::from_secs(61)).await;
    l.try_take(&"a", 100).unwrap();
}

#[tokio::test(start_paused = true)]
async fn keys_beyond_the_bound_share_one_bucket_and_idle_ones_are_dropped() {
    let l = KeyedLimiter::with_max_keys(TEN, 2);
    l.try_take(&1, 20).unwrap();
    l.try_take(&2, 20).unwrap();
    // 1 and 2 are busy: 3 and 4 share the overflow bucket.
    l.try_take(&3, 20).unwrap();
    assert!(l.try_take(&4, 1).is_err());
    assert_eq!(l.tracked(), 2);
    // Once 1 and 2 refilled they are forgotten and 4 gets its own.
    tokio::time::advance(Duration::from_secs(2)).await;
    l.try_take(&4, 20).unwrap();
    assert_eq!(l.tracked(), 1);
}

#[test]
fn the_status_carries_a_retry_info_clients_can_read() {
    let s = status::exhausted("CSR signing for agent X", TEN, Duration::from_micros(1500));
    assert_eq!(s.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        s.message(),
        "rate limit: CSR signing for agent X is over its limit (10/s, burst 20); retry in 2 ms"
    );
    assert_eq!(status::retry_after(&s), Some(Duration::from_millis(2)));
    assert_eq!(status::retry_after(&tonic::Status::unavailable("x")), None);
}

#[test]
fn config_values_become_rates() {
    let r = |per_second, burst| RateConfig { per_second, burst }.rate();
    assert_eq!(
        r(2.5, None).unwrap(),
        Rate {
            per_second: 2.5,
            burst: 3
        }
    );
    assert_eq!(r(0.0, Some(9)).unwrap(), Rate::OFF);
    assert_eq!(r(1.0, Some(50)).unwrap().burst, 50);
    assert!(r(-1.0, None).unwrap_err().contains("at least 0"));
    assert!(r(f64::NAN, None).is_err());
    assert_eq!(r(1.0, Some(0)).unwrap_err(), "burst must be at least 1");
}
