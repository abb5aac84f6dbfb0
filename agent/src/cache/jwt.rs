//! JWT-SVIDs minted by the server on demand, cached per (entry, SPIFFE ID,
//! audience set) and reused until half their lifetime. Concurrent identical
//! requests share one server call; a still-valid token is served while the
//! server is unreachable. Tokens whose `jti` is revoked, whose `kid` is
//! tainted or whose entry is gone are dropped as soon as the cache learns it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::future::{BoxFuture, FutureExt, Shared};
use signet_core::clock::from_unix_seconds;
use signet_core::{Clock, JwtSvid, SpiffeId};
use signet_proto::node::MintJwtSvidRequest;

use crate::node_client::{CallError, LateConnector};

/// A bound on one mint round trip.
const MINT_TIMEOUT: Duration = Duration::from_secs(10);
/// Above this many cached tokens, or this many bytes of them, expired ones
/// are swept and, if still too many, those expiring first are dropped. Bytes
/// count too: a token's size grows with its audiences, which a caller picks.
const MAX_CACHED: usize = 4096;
const MAX_CACHED_BYTES: usize = 8 << 20;
/// What a cached token costs beyond its strings (map slot, times, Arcs).
const ENTRY_OVERHEAD: usize = 160;

/// Why a mint failed; cloned to every waiter of a shared call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The server could not be reached or did not answer: a cached token
    /// that is still valid may be served instead.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server answered and refused.
    #[error("server refused: {0}")]
    Refused(String),
}

/// Whoever mints JWT-SVIDs: the server in production, a fake in tests.
#[async_trait]
pub trait JwtMinter: Send + Sync {
    async fn mint(&self, entry_id: &str, audience: &[String]) -> Result<JwtSvid, MintError>;
}

/// Mints through the server's `MintJwtSvid`.
pub struct NodeMinter {
    pub connector: LateConnector,
}

#[async_trait]
impl JwtMinter for NodeMinter {
    async fn mint(&self, entry_id: &str, audience: &[String]) -> Result<JwtSvid, MintError> {
        let connector = self
            .connector
            .get()
            .map_err(|e| MintError::Unreachable(e.to_string()))?;
        let request = MintJwtSvidRequest {
            entry_id: entry_id.to_owned(),
            audience: audience.to_vec(),
        };
        let minted = connector
            .call(|mut client| {
                let request = request.clone();
                async move { client.mint_jwt_svid(request).await }
            })
            .await;
        match minted {
            Ok(r) => Ok(JwtSvid {
                token: r.token,
                issued_at: from_unix_seconds(r.issued_at),
                expires_at: from_unix_seconds(r.expires_at),
            }),
            Err(CallError::Connect(e)) => Err(MintError::Unreachable(e.to_string())),
            Err(
                e @ CallError::Status {
                    server_failed: true,
                    ..
                },
            ) => Err(MintError::Unreachable(e.to_string())),
            Err(e @ CallError::Status { .. }) => Err(MintError::Refused(e.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    entry_id: String,
    spiffe_id: String,
    /// Sorted, without duplicates.
    audience: Vec<String>,
}

type MintFuture = Shared<BoxFuture<'static, Result<JwtSvid, MintError>>>;

/// A cached token with the header and claim the policy looks at.
struct Cached {
    jwt: JwtSvid,
    kid: String,
    jti: String,
}

/// What must not be served: the latest cache snapshot itself, shared
/// rather than copied (its entry ids alone were 0.8 MB at 10k entries,
/// rebuilt on every snapshot).
#[derive(Default)]
struct Policy {
    /// `None` until the first snapshot: everything allowed.
    snapshot: Option<Arc<super::Snapshot>>,
}

impl Policy {
    fn allows(&self, key: &Key, c: &Cached, now: SystemTime) -> bool {
        self.snapshot.as_ref().is_none_or(|s| {
            !s.revocations.is_jti_revoked(&c.jti, now)
                && !s.tainted.jwt_kids.contains(&c.kid)
                && s.entries.contains_key(key.entry_id.as_str())
        })
    }
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<Key, Cached>,
    in_flight: HashMap<Key, MintFuture>,
    policy: Policy,
}

pub struct JwtSvidCache {
    minter: Arc<dyn JwtMinter>,
    clock: Arc<dyn Clock>,
    inner: Arc<Mutex<Inner>>,
}

impl JwtSvidCache {
    pub fn new(minter: Arc<dyn JwtMinter>, clock: Arc<dyn Clock>) -> Self {
        Self {
            minter,
            clock,
            inner: Arc::default(),
        }
    }

    /// A token for `spiffe_id` (from entry `entry_id`) valid for every
    /// audience in `audience`.
    pub async fn fetch(
        &self,
        entry_id: &str,
        spiffe_id: &SpiffeId,
        audience: &[String],
    ) -> Result<String, MintError> {
        let mut audience = audience.to_vec();
        audience.sort();
        audience.dedup();
        let key = Key {
            entry_id: entry_id.to_owned(),
            spiffe_id: spiffe_id.to_string(),
            audience,
        };
        let call = {
            let mut inner = lock(&self.inner);
            let now = self.clock.now();
            if let Some(t) = inner
                .tokens
                .get(&key)
                .filter(|c| c.jwt.is_fresh_at(now) && inner.policy.allows(&key, c, now))
            {
                return Ok(t.jwt.token.clone());
            }
            match inner.in_flight.get(&key) {
                Some(call) => call.clone(),
                None => {
                    let call = self.start_mint(key.clone());
                    inner.in_flight.insert(key.clone(), call.clone());
                    call
                }
            }
        };
        match call.await {
            Ok(t) => Ok(t.token),
            Err(MintError::Unreachable(e)) => {
                let inner = lock(&self.inner);
                let now = self.clock.now();
                match inner
                    .tokens
                    .get(&key)
                    .filter(|c| c.jwt.is_valid_at(now) && inner.policy.allows(&key, c, now))
                {
                    Some(t) => {
                        tracing::warn!(entry_id, error = %e, "server unreachable; serving the cached JWT-SVID");
                        Ok(t.jwt.token.clone())
                    }
                    None => Err(MintError::Unreachable(e)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Mints in a task of its own, so a caller that hangs up does not cancel
    /// the call for the others; the task files the result and forgets the
    /// in-flight call before anyone sees the outcome.
    fn start_mint(&self, key: Key) -> MintFuture {
        let minter = self.minter.clone();
        let inner = self.inner.clone();
        let clock = self.clock.clone();
        let task = tokio::spawn(async move {
            let minted =
                match tokio::time::timeout(MINT_TIMEOUT, minter.mint(&key.entry_id, &key.audience))
                    .await
                {
                    Ok(r) => r.and_then(|t| check_subject(t, &key.spiffe_id)),
                    Err(_) => Err(MintError::Unreachable("timed out".into())),
                };
            let mut inner = lock(&inner);
            inner.in_flight.remove(&key);
            minted.map(|c| {
                let jwt = c.jwt.clone();
                if inner.policy.allows(&key, &c, clock.now()) {
                    inner.tokens.insert(key, c);
                    evict(&mut inner.tokens, clock.now());
                }
                jwt
            })
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(MintError::Unreachable(format!("mint task failed: {e}"))))
        }
        .boxed()
        .shared()
    }

    /// Adopts the latest cache snapshot's revocations, tainted kids and
    /// entries, dropping every cached token they rule out at once.
    pub fn apply_policy(&self, snapshot: &Arc<super::Snapshot>) {
        let mut inner = lock(&self.inner);
        // The old snapshot may be its last holder: freed after the unlock.
        let old = std::mem::replace(
            &mut inner.policy,
            Policy {
                snapshot: Some(snapshot.clone()),
            },
        );
        let now = self.clock.now();
        let Inner { tokens, policy, .. } = &mut *inner;
        let before = tokens.len();
        tokens.retain(|k, c| policy.allows(k, c, now));
        let dropped = before - tokens.len();
        drop(inner);
        drop(old);
        if dropped > 0 {
            tracing::info!(
                dropped,
                "dropped cached JWT-SVIDs (revoked, tainted key or entry gone)"
            );
        }
    }

    #[cfg(test)]
    fn cached_len(&self) -> usize {
        lock(&self.inner).tokens.len()
    }
}

/// Keeps the JWT-SVID cache's policy in step with the published cache.
pub async fn follow_snapshots(
    mut snapshots: tokio::sync::watch::Receiver<Arc<super::Snapshot>>,
    cache: Arc<JwtSvidCache>,
) {
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        cache.apply_policy(&snapshot);
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

/// A token for another identity than asked for is never handed out.
fn check_subject(t: JwtSvid, spiffe_id: &str) -> Result<Cached, MintError> {
    let (header, claims) = signet_core::jwt::parse_unverified(&t.token)
        .map_err(|e| MintError::Refused(format!("server sent a malformed token: {e}")))?;
    let text = |map: &serde_json::Map<String, serde_json::Value>, k: &str| {
        map.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    match claims.get("sub").and_then(|s| s.as_str()) {
        Some(sub) if sub == spiffe_id => Ok(Cached {
            kid: text(&header, "kid"),
            jti: text(&claims, "jti"),
            jwt: t,
        }),
        other => Err(MintError::Refused(format!(
            "server sent a token for {other:?}, expected {spiffe_id}"
        ))),
    }
}

/// The memory one cached token takes, about.
fn cost(key: &Key, c: &Cached) -> usize {
    let audience: usize = key.audience.iter().map(|a| a.len() + 24).sum();
    ENTRY_OVERHEAD
        + key.entry_id.len()
        + key.spiffe_id.len()
        + audience
        + c.jwt.token.len()
        + c.kid.len()
        + c.jti.len()
}

/// Drops expired tokens, then, over either bound, the soonest-expiring ones.
fn evict(tokens: &mut HashMap<Key, Cached>, now: SystemTime) {
    tokens.retain(|_, c| c.jwt.is_valid_at(now));
    let mut bytes: usize = tokens.iter().map(|(k, c)| cost(k, c)).sum();
    if tokens.len() <= MAX_CACHED && bytes <= MAX_CACHED_BYTES {
        return;
    }
    let mut by_expiry: Vec<(SystemTime, Key)> = tokens
        .iter()
        .map(|(k, c)| (c.jwt.expires_at, k.clone()))
        .collect();
    by_expiry.sort_by_key(|a| a.0);
    for (_, key) in by_expiry {
        if tokens.len() <= MAX_CACHED && bytes <= MAX_CACHED_BYTES {
            break;
        }
        if let Some(c) = tokens.remove(&key) {
            bytes = bytes.saturating_sub(cost(&key, &c));
        }
    }
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    // Nothing panics while holding it; recover rather than propagate.
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
