//! The one task that owns the authorities. Timer ticks and admin commands
//! reach it in turn, so a `prepare` can never race the rotation; each
//! change is worked out by `authorities::apply`, its keys generated and
//! stored on the blocking pool, committed to the datastore with its events
//! in one transaction, and only then published to the signers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_core::rotation::wait_until;
use signet_core::{Clock, TrustDomain};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::authorities::{Authorities, Command, Effect};
use super::key_manager::KeyManager;
use super::keys::{generate_jwt, generate_x509, Generated};
use super::signer::Snapshot;
use super::{store, AuthorityInfo, AuthorityKind, AuthorityState, CaError, Schedule};
use crate::datastore::DataStore;
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

/// How long to wait after a failed tick before the next.
const RETRY_FAILED_TICK: Duration = Duration::from_secs(60);
/// Re-check at least hourly, in case the wall clock jumped.
const RECHECK: Duration = Duration::from_secs(3600);
/// Commands and ticks one change may take (each generation is one more).
const MAX_ROUNDS: usize = 32;

pub struct Manager {
    pub authorities: Authorities,
    pub trust_domain: TrustDomain,
    pub ca_ttl: Duration,
    pub schedule: Schedule,
    pub clock: Arc<dyn Clock>,
    pub ds: Arc<dyn DataStore>,
    pub keys: Arc<dyn KeyManager>,
    pub publish: watch::Sender<Arc<Snapshot>>,
    /// The datastore holds other authorities than these (some could not be
    /// loaded): the next change is saved even if it changes nothing here.
    pub stale_store: bool,
}

impl Manager {
    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut failed_until: Option<Instant> = None;
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
            tokio::select! {
                request = requests.recv() => {
                    let Some(Request { command, reply }) = request else {
                        return;
                    };
                    let _ = reply.send(self.execute(command).await);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    failed_until = match self.execute(Command::Tick).await {
                        Ok(_) => None,
                        Err(e) => {
                            tracing::error!(error = %e, "authority rotation failed; retrying in a minute");
                            Some(Instant::now() + RETRY_FAILED_TICK)
                        }
                    };
                }
            }
        }
    }

    /// Applies `command` and whatever it leads to (generating authorities,
    /// ticking on), then commits and publishes the result. Nothing changes
    /// unless all of it succeeds.
    pub async fn execute(&mut self, command: Command) -> Result<Outcome, CaError> {
        let now = self.clock.now();
        let mut state = self.authorities.clone();
        let mut pending = vec![command];
        let mut subject = None;
        let mut new_keys = Vec::new();
        let mut removed = Vec::new();
        let mut rounds = 0;
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
                    Effect::Generate(kind, in_state) => {
                        generating = true;
                        let generated = self.generate(kind, in_state, now).await?;
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
        if state.same_as(&self.authorities) && !self.stale_store {
            return Ok(Outcome {
                subject,
                changed: false,
            });
        }
        self.commit(state, new_keys).await?;
        let keys = self.keys.clone();
        // After the commit: nothing names these keys any more. Best effort.
        let _ = tokio::task::spawn_blocking(move || {
            for (kind, id) in removed {
                keys.remove(kind, &id);
            }
        })
        .await;
        Ok(Outcome {
            subject,
            changed: true,
        })
    }

    async fn generate(
        &self,
        kind: AuthorityKind,
        state: AuthorityState,
        now: SystemTime,
    ) -> Result<Generated, CaError> {
        let td = self.trust_domain.clone();
        let ttl = self.ca_ttl;
        let made = tokio::task::spawn_blocking(move || match kind {
            AuthorityKind::X509 => generate_x509(&td, ttl, now, state),
            AuthorityKind::Jwt => generate_jwt(ttl, now, state),
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
        new_keys: Vec<(AuthorityKind, String, Zeroizing<Vec<u8>>)>,
    ) -> Result<(), CaError> {
        let keys = self.keys.clone();
        tokio::task::spawn_blocking(move || {
            new_keys
                .iter()
                .try_for_each(|(kind, id, pkcs8)| keys.store(*kind, id, pkcs8))
        })
        .await
        .map_err(|e| CaError::Key(format!("storing a key: {e}")))??;
        let mut snapshot = Snapshot::new(&self.trust_domain, state.clone(), 0, 0);
        let mut changes = Vec::new();
        if state.tainted() != self.authorities.tainted() {
            changes.push(Change::TaintedChanged);
        }
        let saved = self
            .ds
            .save_authorities(
                store::records(&state),
                &snapshot.bundle.fingerprint(),
                changes,
            )
            .await
            .map_err(CaError::Store)?;
        log_changes(&self.authorities, &state);
        if saved.sequence != self.publish.borrow().bundle.sequence {
            tracing::info!(sequence = saved.sequence, "trust bundle sequence");
        }
        snapshot.bundle.sequence = saved.sequence;
        snapshot.revision = saved.revision;
        self.authorities = state;
        self.stale_store = false;
        self.publish.send_replace(Arc::new(snapshot));
        Ok(())
    }
}

fn key_of(kind: AuthorityKind, g: &Generated) -> (AuthorityKind, String, Zeroizing<Vec<u8>>) {
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
