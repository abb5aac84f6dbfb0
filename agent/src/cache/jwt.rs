//! JWT-SVIDs minted by the server on demand, cached per (entry, SPIFFE ID,
//! audience set) and reused until half their lifetime. Concurrent identical
//! requests share one server call; a still-valid token is served while the
//! server is unreachable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::future::{BoxFuture, FutureExt, Shared};
use signet_core::clock::from_unix_seconds;
use signet_core::{Clock, SpiffeId};
use signet_proto::node::MintJwtSvidRequest;

use crate::node_client::NodeConnector;

/// A bound on one mint round trip.
const MINT_TIMEOUT: Duration = Duration::from_secs(10);
/// Above this many cached tokens, expired ones are swept and, if still too
/// many, those expiring first are dropped.
const MAX_CACHED: usize = 4096;

/// A token as the server minted it.
#[derive(Clone, PartialEq, Eq)]
pub struct MintedJwt {
    pub token: String,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
}

impl MintedJwt {
    /// Fresh until half its lifetime has passed.
    fn is_fresh_at(&self, now: SystemTime) -> bool {
        let life = self
            .expires_at
            .duration_since(self.issued_at)
            .unwrap_or_default();
        now < self.issued_at + life / 2
    }

    fn is_valid_at(&self, now: SystemTime) -> bool {
        now < self.expires_at
    }
}

impl std::fmt::Debug for MintedJwt {
    // The token is a bearer credential: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedJwt")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

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
    async fn mint(&self, entry_id: &str, audience: &[String]) -> Result<MintedJwt, MintError>;
}

/// Mints through the server's `MintJwtSvid`.
pub struct NodeMinter {
    pub connector: Arc<NodeConnector>,
}

#[async_trait]
impl JwtMinter for NodeMinter {
    async fn mint(&self, entry_id: &str, audience: &[String]) -> Result<MintedJwt, MintError> {
        let mut client = self
            .connector
            .client()
            .await
            .map_err(|e| MintError::Unreachable(e.to_string()))?;
        let request = MintJwtSvidRequest {
            entry_id: entry_id.to_owned(),
            audience: audience.to_vec(),
        };
        match client.mint_jwt_svid(request).await {
            Ok(r) => {
                let r = r.into_inner();
                Ok(MintedJwt {
                    token: r.token,
                    issued_at: from_unix_seconds(r.issued_at),
                    expires_at: from_unix_seconds(r.expires_at),
                })
            }
            Err(status) => {
                let message = format!("{:?}: {}", status.code(), status.message());
                use tonic::Code::*;
                match status.code() {
                    Unavailable | DeadlineExceeded | Cancelled | Unknown | Aborted
                    | ResourceExhausted | Internal => {
                        self.connector.reset().await;
                        Err(MintError::Unreachable(message))
                    }
                    _ => Err(MintError::Refused(message)),
                }
            }
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

type MintFuture = Shared<BoxFuture<'static, Result<MintedJwt, MintError>>>;

#[derive(Default)]
struct Inner {
    tokens: HashMap<Key, MintedJwt>,
    in_flight: HashMap<Key, MintFuture>,
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
            if let Some(t) = inner.tokens.get(&key).filter(|t| t.is_fresh_at(now)) {
                return Ok(t.token.clone());
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
                match inner.tokens.get(&key).filter(|t| t.is_valid_at(now)) {
                    Some(t) => {
                        tracing::warn!(entry_id, error = %e, "server unreachable; serving the cached JWT-SVID");
                        Ok(t.token.clone())
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
            if let Ok(t) = &minted {
                inner.tokens.insert(key, t.clone());
                evict(&mut inner.tokens, clock.now());
            }
            minted
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(MintError::Unreachable(format!("mint task failed: {e}"))))
        }
        .boxed()
        .shared()
    }

    #[cfg(test)]
    fn cached_len(&self) -> usize {
        lock(&self.inner).tokens.len()
    }
}

/// A token for another identity than asked for is never handed out.
fn check_subject(t: MintedJwt, spiffe_id: &str) -> Result<MintedJwt, MintError> {
    let (_, claims) = signet_core::jwt::parse_unverified(&t.token)
        .map_err(|e| MintError::Refused(format!("server sent a malformed token: {e}")))?;
    match claims.get("sub").and_then(|s| s.as_str()) {
        Some(sub) if sub == spiffe_id => Ok(t),
        other => Err(MintError::Refused(format!(
            "server sent a token for {other:?}, expected {spiffe_id}"
        ))),
    }
}

/// Drops expired tokens, then, over the bound, the soonest-expiring ones.
fn evict(tokens: &mut HashMap<Key, MintedJwt>, now: SystemTime) {
    tokens.retain(|_, t| t.is_valid_at(now));
    if tokens.len() <= MAX_CACHED {
        return;
    }
    let mut by_expiry: Vec<(SystemTime, Key)> = tokens
        .iter()
        .map(|(k, t)| (t.expires_at, k.clone()))
        .collect();
    by_expiry.sort_by_key(|a| a.0);
    let excess = tokens.len() - MAX_CACHED;
    for (_, key) in by_expiry.into_iter().take(excess) {
        tokens.remove(&key);
    }
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    // Nothing panics while holding it; recover rather than propagate.
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
