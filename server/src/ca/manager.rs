//! The one task that owns this server's authorities. Timer ticks, admin
//! commands and news of other servers' authority changes reach it in turn,
//! so a `prepare` can never race the rotation; each change is worked out by
//! `authorities::apply`, its keys generated and stored on the blocking pool,
//! committed to the datastore with its events in one transaction, and only
//! then published to the signers with every other server's authorities.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_core::jwt::JwtKeyType;
use signet_core::rotation::wait_until;
use signet_core::{Clock, TrustDomain};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::authorities::{Authorities, Command, Effect};
use super::key_manager::{KeyManager, PrivateKey};
use super::keys::{adopt_signed_x509, generate_jwt, generate_x509, Generated};
use super::signer::Snapshot;
use super::upstream::Upstream;
use super::{rotation, store, AuthorityInfo, AuthorityKind, AuthorityState, CaError, Schedule};
use crate::datastore::{AuthorityRecord, DataStore, DataStoreError};
use crate::events::Change;

/// A command and who waits for its outcome.
pub struct Request {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Outcome, CaError>>,
}

pub struct Outcome {
    /// The authority the command was about, as it now stands.
    pub subject: Option<AuthorityInfo>,
    /// Whether the authorities changed.
    pub changed: bool,
}

/// How long to wait after failed ticks before the next: doubling from the
/// first to the last (an upstream authority out of reach is asked again
/// soon, and then not too often).
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_CEILING: Duration = Duration::from_secs(60);

/// The wait after the `failures`-th failed tick in a row (1-based).
pub fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST
        .saturating_mul(1 << doublings)
        .min(RETRY_CEILING)
}
/// How long to wait after a failed reload before the next.
const RETRY_FAILED_RELOAD: Duration = Duration::from_secs(1);
/// Re-check at least hourly, in case the wall clock jumped.
const RECHECK: Duration = Duration::from_secs(3600);
/// Commands and ticks one change may take (each generation is one more).
const MAX_ROUNDS: usize = 32;

pub struct Manager {
    pub authorities: Authorities,
    /// Every other server's authorities, as last read.
    pub peers: Vec<AuthorityRecord>,
    pub server_id: String,
    pub trust_domain: TrustDomain,
    pub ca_ttl: Duration,
    pub jwt_key_type: JwtKeyType,
    pub schedule: Schedule,
    pub upstream: Option<Upstream>,
    pub clock: Arc<dyn Clock>,
    pub ds: Arc<dyn DataStore>,
    pub keys: Arc<dyn KeyManager>,
    pub publish: watch::Sender<Arc<Snapshot>>,
    /// Why the last rotation failed and until when the active CA signs
    /// (the health report shows it); `None` once one succeeds.
    pub warning: watch::Sender<Option<String>>,
    /// The datastore holds other authorities than these (some could not be
    /// loaded): the next change is saved even if it changes nothing here.
    pub stale_store: bool,
}

impl Manager {
    /// `reload` carries the revision of the latest authority event of any
    /// server: when it is past what was published, the store is read again.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut reload: watch::Receiver<u64>,
    ) {
        let mut failed_until: Option<Instant> = None;
        let mut failures = 0_u32;
        let mut reload_failed = false;
        loop {
            let now = self.clock.now();
            let next = self.authorities.next_transition(&self.schedule, now);
            let wait = wait_until(now, next)
                .min(RECHECK)
                .max(Duration::from_millis(100));
            let deadline = match failed_until {
                Some(t) if t > Instant::now() => t,
                _ => Instant::now() + wait,
            };
            let retry_reload = async {
                if reload_failed {
                    tokio::time::sleep(RETRY_FAILED_RELOAD).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                request = requests.recv() => {
                    let Some(Request { command, reply }) = request else {
                        return;
                    };
                    let _ = reply.send(self.execute(command).await);
                }
                changed = reload.changed() => {
                    if changed.is_err() {
                        // The bus is gone: shutting down; ticks go on.
                        reload = watch::channel(0).1;
                        continue;
                    }
                    let wanted = *reload.borrow_and_update();
                    reload_failed = !self.reload_if_behind(wanted).await;
                }
                _ = retry_reload => {
                    let wanted = *reload.borrow();
                    reload_failed = !self.reload_if_behind(wanted).await;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let ticked = self.execute(Command::Tick).await;
                    self.report(ticked.as_ref().err());
                    failed_until = match ticked {
                        Ok(_) => {
                            failures = 0;
                            None
                        }
                        Err(e) => {
                            failures = failures.saturating_add(1);
                            let retry = retry_after(failures);
                            tracing::error!(error = %e, retry_in_s = retry.as_secs(), active_ca_signs_until = %self.signs_until(), "authority rotation failed; retrying");
                            Some(Instant::now() + retry)
                        }
                    };
                }
            }
        }
    }

    /// The tick at start. An upstream authority out of reach does not stop
    /// a server whose CA still signs (the timer retries); with no CA to
    /// sign with, it is asked again with backoff until it answers.
    pub async fn first_tick(&mut self) -> Result<(), CaError> {
        let mut failures = 0_u32;
        loop {
            let ticked = self.execute(Command::Tick).await;
            self.report(ticked.as_ref().err());
            let e = match ticked {
                Ok(_) => return Ok(()),
                Err(e @ CaError::Upstream(_)) => e,
                Err(e) => return Err(e),
            };
            let now = self.clock.now();
            if rotation::active(&self.authorities.x509).is_some_and(|a| a.meta.not_after > now) {
                tracing::warn!(error = %e, "the upstream authority did not sign a new CA; the active one signs on");
                return Ok(());
            }
            failures = failures.saturating_add(1);
            let retry = retry_after(failures);
            tracing::warn!(error = %e, retry_in_s = retry.as_secs(), "no CA to sign with yet: waiting for the upstream authority");
            tokio::time::sleep(retry).await;
        }
    }

    /// When the active X.509 CA stops signing, as the log and health say it.
    fn signs_until(&self) -> String {
        rotation::active(&self.authorities.x509).map_or_else(
            || "no active CA".to_owned(),
            |a| signet_runtime::time::rfc3339(signet_core::clock::unix_seconds(a.meta.not_after)),
        )
    }

    /// Publishes why rotation failed (or that it no longer does).
    fn report(&self, failed: Option<&CaError>) {
        let warning = failed.map(|e| {
            format!(
                "authority rotation failing ({e}); the active CA signs until {}",
                self.signs_until()
            )
        });
        self.warning.send_if_modified(|w| {
            let changed = *w != warning;
            *w = warning;
            changed
        });
    }

    /// Reads every server's authorities again when `revision` is past the
    /// published ones; false when the store could not be read.
    async fn reload_if_behind(&mut self, revision: u64) -> bool {
        if revision <= self.publish.borrow().revision {
            return true;
        }
        match self.reload().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "reading the other servers' authorities failed; retrying");
                false
            }
        }
    }

    /// Reads every server's authorities and publishes them: other servers'
    /// as they are, ours with what others changed of them (a taint, a
    /// revocation).
    async fn reload(&mut self) -> Result<(), CaError> {
        let stored = self.ds.load_authorities().await.map_err(CaError::Store)?;
        let revision = stored.revision;
        self.adopt(stored.authorities, stored.sequence, revision)
            .await;
        Ok(())
    }

    /// Splits `all` into ours and the peers', takes in what others changed
    /// of ours, and publishes at `sequence` and `revision`.
    async fn adopt(&mut self, all: Vec<AuthorityRecord>, sequence: u64, revision: u64) {
        let (own, peers): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|a| a.server_id == self.server_id);
        let before = self.authorities.clone();
        let removed = self.authorities.adopt(&own);
        log_changes(&before, &self.authorities);
        self.remove_keys(removed).await;
        self.peers = peers;
        let snapshot = Snapshot::new(
            &self.trust_domain,
            &self.server_id,
            self.authorities.clone(),
            self.peers.clone(),
            sequence,
            revision,
        );
        if sequence != self.publish.borrow().bundle.sequence {
            tracing::info!(sequence, "trust bundle sequence");
        }
        self.publish.send_replace(Arc::new(snapshot));
    }

    /// Applies `command` and whatever it leads to (generating authorities,
    /// ticking on), then commits and publishes the result. Nothing changes
    /// unless all of it succeeds, but for a tick whose new X.509 CA the
    /// upstream could not sign: the rest commits, then the error returns.
    /// A taint or revocation of another server's authority is made in the
    /// datastore directly (its owner may be down).
    pub async fn execute(&mut self, command: Command) -> Result<Outcome, CaError> {
        match command {
            Command::Taint(kind, id) if !self.authorities.holds(kind, &id) => {
                return self.peer_change(kind, id, false).await;
            }
            Command::Revoke(kind, id) if !self.authorities.holds(kind, &id) => {
                return self.peer_change(kind, id, true).await;
            }
            command => self.execute_own(command).await,
        }
    }

    async fn peer_change(
        &mut self,
        kind: AuthorityKind,
        id: String,
        revoke: bool,
    ) -> Result<Outcome, CaError> {
        let changed = if revoke {
            self.ds.revoke_authority(kind, &id).await
        } else {
            self.ds.taint_authority(kind, &id).await
        }
        .map_err(|e| match e {
            DataStoreError::NotFound(what) => CaError::NotFound(what),
            DataStoreError::FailedPrecondition(why) => CaError::FailedPrecondition(why),
            other => CaError::Store(other),
        })?;
        tracing::warn!(kind = kind.as_str(), %id, server_id = %changed.server_id, revoked = revoke, "another server's authority {}", if revoke { "revoked" } else { "tainted" });
        self.reload().await?;
        let subject = AuthorityInfo {
            kind,
            id: changed.id,
            server_id: changed.server_id,
            state: changed.state,
            tainted: true,
            not_before: changed.not_before,
            not_after: changed.not_after,
            certificate: changed.certificate,
        };
        Ok(Outcome {
            subject: Some(subject),
            changed: true,
        })
    }

    async fn execute_own(&mut self, command: Command) -> Result<Outcome, CaError> {
        let now = self.clock.now();
        let mut state = self.authorities.clone();
        let mut pending = vec![command];
        let mut subject = None;
        let mut new_keys = Vec::new();
        let mut removed = Vec::new();
        let mut rounds = 0;
        // A tick goes on without the X.509 CA its upstream could not sign
        // (JWT keys rotate regardless), commits the rest, and then returns
        // this error so that the caller retries.
        let mut unsigned: Option<CaError> = None;
        while let Some(command) = pending.pop() {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(CaError::Key("the authority changes did not settle".into()));
            }
            let tick = matches!(command, Command::Tick);
            let applied = state.apply(now, &self.schedule, command)?;
            state = applied.next;
            subject = applied.subject.or(subject);
            let mut generating = false;
            for effect in applied.effects {
                match effect {
                    // One at a time: the tick after its `Add` asks for
                    // whatever else is still missing.
                    Effect::Generate(..) if generating => {}
                    Effect::Generate(AuthorityKind::X509, _) if unsigned.is_some() => {}
                    Effect::Generate(kind, in_state) => {
                        let generated = match self.generate(kind, in_state, now).await {
                            Ok(generated) => generated,
                            Err(e @ CaError::Upstream(_)) if tick => {
                                unsigned = Some(e);
                                continue;
                            }
                            Err(e) => return Err(e),
                        };
                        generating = true;
                        new_keys.push(key_of(kind, &generated));
                        if tick {
                            pending.push(Command::Tick);
                        }
                        pending.push(Command::Add(generated));
                    }
                    Effect::RemoveKey(kind, id) => removed.push((kind, id)),
                }
            }
        }
        let subject = subject.map(|s| AuthorityInfo {
            server_id: self.server_id.clone(),
            ..s
        });
        let changed = !state.same_as(&self.authorities) || self.stale_store;
        if changed {
            self.commit(state, new_keys).await?;
            // After the commit: nothing names these keys any more.
            self.remove_keys(removed).await;
        }
        match unsigned {
            Some(e) => Err(e),
            None => Ok(Outcome { subject, changed }),
        }
    }

    /// Best effort: a key left behind names nothing.
    async fn remove_keys(&self, removed: Vec<(AuthorityKind, String)>) {
        if removed.is_empty() {
            return;
        }
        let keys = self.keys.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for (kind, id) in removed {
                keys.remove(kind, &id);
            }
        })
        .await;
    }

    async fn generate(
        &self,
        kind: AuthorityKind,
        state: AuthorityState,
        now: SystemTime,
    ) -> Result<Generated, CaError> {
        let td = self.trust_domain.clone();
        let ttl = self.ca_ttl;
        let key_type = self.jwt_key_type;
        let keys = self.keys.clone();
        let disk = match (&self.upstream, kind) {
            (Some(Upstream::Signet(signet)), AuthorityKind::X509) => {
                let (private, signed) = signet.sign_new_ca(keys, ttl).await?;
                return tokio::task::spawn_blocking(move || {
                    adopt_signed_x509(&td, state, signed, private, now)
                })
                .await
                .map_err(|e| CaError::Key(format!("adopting the signed CA: {e}")))?;
            }
            (Some(Upstream::Disk(disk)), _) => Some(disk.clone()),
            _ => None,
        };
        let made = tokio::task::spawn_blocking(move || {
            let private = keys.generate(kind, key_type)?;
            match kind {
                AuthorityKind::X509 => {
                    generate_x509(&td, ttl, now, state, disk.as_deref(), private)
                }
                AuthorityKind::Jwt => generate_jwt(ttl, now, state, private),
            }
        })
        .await
        .map_err(|e| CaError::Key(format!("generating a key: {e}")))??;
        Ok(made)
    }

    /// Keys first (the datastore never names an authority whose key is not
    /// kept), then the authorities with their events, then the signers.
    async fn commit(
        &mut self,
        state: Authorities,
        new_keys: Vec<(AuthorityKind, String, PrivateKey)>,
    ) -> Result<(), CaError> {
        let keys = self.keys.clone();
        tokio::task::spawn_blocking(move || {
            new_keys
                .iter()
                .try_for_each(|(kind, id, key)| keys.store(*kind, id, key))
        })
        .await
        .map_err(|e| CaError::Key(format!("storing a key: {e}")))??;
        let mut changes = Vec::new();
        if state.tainted() != self.authorities.tainted() {
            changes.push(Change::TaintedChanged);
        }
        let saved = self
            .ds
            .save_authorities(
                &self.server_id,
                store::records(&state, &self.server_id),
                changes,
            )
            .await
            .map_err(CaError::Store)?;
        log_changes(&self.authorities, &state);
        self.authorities = state;
        self.stale_store = false;
        self.adopt(saved.authorities, saved.sequence, saved.revision)
            .await;
        Ok(())
    }
}

fn key_of(kind: AuthorityKind, g: &Generated) -> (AuthorityKind, String, PrivateKey) {
    match g {
        Generated::X509(a, key) => (kind, a.meta.id.clone(), key.clone()),
        Generated::Jwt(a, key) => (kind, a.meta.id.clone(), key.clone()),
    }
}

/// One log line per authority that came, went, or changed state or taint.
fn log_changes(before: &Authorities, after: &Authorities) {
    for kind in [AuthorityKind::X509, AuthorityKind::Jwt] {
        let (old, new) = (before.metas(kind), after.metas(kind));
        for m in &new {
            match old.iter().find(|o| o.id == m.id) {
                None => {
                    tracing::info!(kind = kind.as_str(), id = %m.id, state = m.state.as_str(), "authority generated")
                }
                Some(o) if o.state != m.state => {
                    tracing::info!(kind = kind.as_str(), id = %m.id, state = m.state.as_str(), "authority state changed")
                }
                Some(o) if o.tainted != m.tainted => {
                    tracing::warn!(kind = kind.as_str(), id = %m.id, "authority tainted")
                }
                Some(_) => {}
            }
        }
        for o in old.iter().filter(|o| new.iter().all(|m| m.id != o.id)) {
            tracing::warn!(kind = kind.as_str(), id = %o.id, "authority removed from the bundle");
        }
    }
}

#[cfg(test)]
mod retry_tests {
    use super::retry_after;
    use std::time::Duration;

    #[test]
    fn failed_ticks_back_off_doubling_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_after(0), Duration::from_secs(1));
        assert_eq!(retry_after(u32::MAX), Duration::from_secs(60));
    }
}
