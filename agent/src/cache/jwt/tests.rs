use std::sync::atomic::Ordering;

use signet_core::jwt::{JwtSigner, ValidationOptions};
use signet_core::TrustDomain;

use super::*;
use crate::test_support::{FakeMinter, TokioClock};

const ME: &str = "spiffe://example.org/me";

fn setup(ttl: Duration, delay: Duration) -> (Arc<FakeMinter>, JwtSvidCache, Arc<TokioClock>) {
    let clock = TokioClock::new();
    let (signer, _) = JwtSigner::generate("k1".into()).unwrap();
    let mut minter = FakeMinter::new(Arc::new(signer), clock.clone(), ttl).with_subject("e1", ME);
    minter.delay = delay;
    let minter = Arc::new(minter.with_subject("e2", "spiffe://example.org/other"));
    let cache = JwtSvidCache::new(minter.clone(), clock.clone());
    (minter, cache, clock)
}

fn me() -> SpiffeId {
    SpiffeId::parse(ME).unwrap()
}

fn aud(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn concurrent_identical_requests_share_one_server_call() {
    let (minter, cache, _) = setup(Duration::from_secs(300), Duration::from_millis(100));
    let cache = Arc::new(cache);
    let mut joins = Vec::new();
    for i in 0..16 {
        let cache = cache.clone();
        // The same audience set in any order is the same request.
        let audience = if i % 2 == 0 {
            aud(&["a", "b"])
        } else {
            aud(&["b", "a", "a"])
        };
        joins.push(tokio::spawn(async move {
            cache.fetch("e1", &me(), &audience).await
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for j in joins {
        tokens.insert(j.await.unwrap().unwrap());
    }
    assert_eq!(minter.calls(), 1, "one mint for 16 identical requests");
    assert_eq!(tokens.len(), 1, "everyone got the same token");
    assert!(
        lock(&cache.inner).in_flight.is_empty(),
        "in-flight call forgotten"
    );

    // A different audience set or entry is a different request.
    cache.fetch("e1", &me(), &aud(&["a"])).await.unwrap();
    let other = SpiffeId::parse("spiffe://example.org/other").unwrap();
    cache.fetch("e2", &other, &aud(&["a", "b"])).await.unwrap();
    assert_eq!(minter.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn token_is_reused_until_half_life_then_refreshed() {
    let (minter, cache, _) = setup(Duration::from_secs(100), Duration::ZERO);
    let first = cache.fetch("e1", &me(), &aud(&["a"])).await.unwrap();
    assert_eq!(minter.calls(), 1);

    tokio::time::advance(Duration::from_millis(49_999)).await;
    let again = cache.fetch("e1", &me(), &aud(&["a"])).await.unwrap();
    assert_eq!(again, first, "reused before half-life");
    assert_eq!(minter.calls(), 1, "no mint at half-life - 1 ms");

    tokio::time::advance(Duration::from_millis(1)).await;
    let fresh = cache.fetch("e1", &me(), &aud(&["a"])).await.unwrap();
    assert_eq!(minter.calls(), 2, "minted again at half-life");
    assert_ne!(fresh, first);
}

#[tokio::test(start_paused = true)]
async fn cached_token_is_served_while_server_is_down_until_it_expires() {
    let (minter, cache, _) = setup(Duration::from_secs(100), Duration::ZERO);
    let first = cache.fetch("e1", &me(), &aud(&["a"])).await.unwrap();
    minter.set_unreachable(true);

    tokio::time::advance(Duration::from_secs(60)).await;
    let served = cache.fetch("e1", &me(), &aud(&["a"])).await.unwrap();
    assert_eq!(served, first, "still valid: served from cache");
    assert_eq!(minter.calls(), 2, "a refresh was attempted");

    tokio::time::advance(Duration::from_secs(40)).await;
    let err = cache.fetch("e1", &me(), &aud(&["a"])).await.unwrap_err();
    assert!(matches!(err, MintError::Unreachable(_)), "{err:?}");

    // Nothing cached and the server down: unavailable at once.
    let err = cache.fetch("e1", &me(), &aud(&["new"])).await.unwrap_err();
    assert!(matches!(err, MintError::Unreachable(_)));

    minter.set_unreachable(false);
    cache.fetch("e1", &me(), &aud(&["a"])).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn server_refusal_is_not_masked_and_wrong_subject_is_refused() {
    let (minter, cache, _) = setup(Duration::from_secs(100), Duration::ZERO);
    let err = cache.fetch("gone", &me(), &aud(&["a"])).await.unwrap_err();
    assert!(matches!(err, MintError::Refused(_)), "{err:?}");
    // e2 mints tokens for /other: not handed out as /me.
    let err = cache.fetch("e2", &me(), &aud(&["a"])).await.unwrap_err();
    assert!(matches!(err, MintError::Refused(_)), "{err:?}");
    assert_eq!(cache.cached_len(), 0);
    assert_eq!(minter.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn expired_tokens_are_evicted() {
    let (_, cache, _) = setup(Duration::from_secs(10), Duration::ZERO);
    for a in ["a", "b", "c"] {
        cache.fetch("e1", &me(), &aud(&[a])).await.unwrap();
    }
    assert_eq!(cache.cached_len(), 3);
    tokio::time::advance(Duration::from_secs(11)).await;
    cache.fetch("e1", &me(), &aud(&["d"])).await.unwrap();
    assert_eq!(cache.cached_len(), 1, "expired tokens swept on insert");
}

#[test]
fn cache_is_bounded() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let mut tokens = HashMap::new();
    for i in 0..(MAX_CACHED + 10) {
        tokens.insert(
            Key {
                entry_id: "e".into(),
                spiffe_id: ME.into(),
                audience: vec![i.to_string()],
            },
            Cached {
                jwt: JwtSvid {
                    token: String::new(),
                    issued_at: now,
                    expires_at: now + Duration::from_secs(100 + i as u64),
                },
                kid: String::new(),
                jti: String::new(),
            },
        );
    }
    evict(&mut tokens, now);
    assert_eq!(tokens.len(), MAX_CACHED);
    assert!(
        !tokens.keys().any(|k| k.audience == vec!["0".to_string()]),
        "the soonest-expiring go first"
    );
}

#[test]
fn cache_is_bounded_in_bytes_when_tokens_are_large() {
    // 200 distinct sets of the most audiences a request may carry: each
    // token is ~6 KB, so the count bound alone would keep them all.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let mut tokens = HashMap::new();
    let big = "x".repeat(signet_core::jwt::MAX_AUDIENCE_BYTES / 32);
    for i in 0..2000 {
        let audience: Vec<String> = (0..32).map(|j| format!("{i}-{j}-{big}")).collect();
        let token = "t".repeat(audience.iter().map(String::len).sum::<usize>() + 500);
        tokens.insert(
            Key {
                entry_id: "e".into(),
                spiffe_id: ME.into(),
                audience,
            },
            Cached {
                jwt: JwtSvid {
                    token,
                    issued_at: now,
                    expires_at: now + Duration::from_secs(100 + i as u64),
                },
                kid: String::new(),
                jti: String::new(),
            },
        );
        evict(&mut tokens, now);
    }
    let bytes: usize = tokens.iter().map(|(k, c)| cost(k, c)).sum();
    assert!(bytes <= MAX_CACHED_BYTES, "{bytes}");
    assert!(
        tokens.len() < 2000 && tokens.len() > 500,
        "{}",
        tokens.len()
    );
}

#[tokio::test(start_paused = true)]
async fn minted_token_validates_against_the_signer_key() {
    let (minter, cache, clock) = setup(Duration::from_secs(300), Duration::ZERO);
    let token = cache.fetch("e1", &me(), &aud(&["x"])).await.unwrap();
    let mut bundles = signet_core::jwt::JwtBundles::new();
    bundles.insert(
        TrustDomain::new("example.org").unwrap(),
        [("k1".to_string(), minter.signer.public_key())].into(),
    );
    let v = signet_core::jwt::validate_jwt_svid(
        &token,
        "x",
        &bundles,
        ValidationOptions {
            now: clock.now(),
            leeway: Duration::from_secs(30),
        },
    )
    .unwrap();
    assert_eq!(v.spiffe_id, me());
}

fn policy_snapshot(
    entries: &[&str],
    revoked_jtis: &[&str],
    tainted_kids: &[&str],
    now: SystemTime,
) -> Arc<super::super::Snapshot> {
    let mut s = super::super::Snapshot::empty(TrustDomain::new("example.org").unwrap());
    for id in entries {
        s.entries.insert(
            (*id).into(),
            super::super::CachedEntry {
                entry: std::sync::Arc::new(crate::test_support::entry(
                    id,
                    &me().to_string(),
                    "spiffe://example.org/agent",
                    &[],
                )),
                svid: None,
            },
        );
    }
    let mut r = super::super::Revocations::default();
    for jti in revoked_jtis {
        r.jwt_ids
            .insert((*jti).into(), now + Duration::from_secs(600));
    }
    s.revocations = Arc::new(r);
    s.tainted = Arc::new(super::super::Tainted {
        x509: Default::default(),
        jwt_kids: tainted_kids.iter().map(|k| k.to_string()).collect(),
    });
    Arc::new(s)
}

#[tokio::test(start_paused = true)]
async fn revoked_jti_is_dropped_from_the_cache_and_a_fresh_token_minted() {
    let (minter, cache, clock) = setup(Duration::from_secs(300), Duration::ZERO);
    let first = cache.fetch("e1", &me(), &aud(&["x"])).await.unwrap();
    assert_eq!(minter.calls(), 1);
    cache.apply_policy(&policy_snapshot(&["e1"], &["jti-0"], &[], clock.now()));
    assert_eq!(cache.cached_len(), 0, "revoked token dropped");
    let second = cache.fetch("e1", &me(), &aud(&["x"])).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(minter.calls(), 2);

    // Nor is a revoked token served from cache while the server is down.
    minter.set_unreachable(true);
    cache.apply_policy(&policy_snapshot(
        &["e1"],
        &["jti-0", "jti-1"],
        &[],
        clock.now(),
    ));
    assert!(cache.fetch("e1", &me(), &aud(&["x"])).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn tokens_of_a_tainted_kid_are_dropped() {
    let (minter, cache, clock) = setup(Duration::from_secs(300), Duration::ZERO);
    cache.fetch("e1", &me(), &aud(&["x"])).await.unwrap();
    cache.apply_policy(&policy_snapshot(&["e1"], &[], &["other-kid"], clock.now()));
    assert_eq!(cache.cached_len(), 1, "other kids do not matter");
    cache.apply_policy(&policy_snapshot(&["e1"], &[], &["k1"], clock.now()));
    assert_eq!(cache.cached_len(), 0);
    let _ = minter;
}

#[tokio::test(start_paused = true)]
async fn all_tokens_go_when_the_agent_loses_its_entries() {
    let (_, cache, clock) = setup(Duration::from_secs(300), Duration::ZERO);
    cache.fetch("e1", &me(), &aud(&["x"])).await.unwrap();
    cache.fetch("e1", &me(), &aud(&["y"])).await.unwrap();
    assert_eq!(cache.cached_len(), 2);
    cache.apply_policy(&policy_snapshot(&[], &[], &[], clock.now()));
    assert_eq!(cache.cached_len(), 0, "banned: every JWT-SVID dropped");
}
