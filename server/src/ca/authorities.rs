//! The trust domain's authorities as a value, and every change to them as a
//! pure function: `apply(state, now, command) -> (state, effects)`. Nothing
//! here generates keys, reads a clock or touches a disk; the manager does
//! what the effects ask and feeds generated authorities back as `Add`.

use std::time::SystemTime;

use signet_core::clock::unix_seconds;

use super::keys::{Generated, JwtKey, X509Authority};
use super::rotation::{self, active, Action, HasMeta, Meta, Schedule};
use super::{AuthorityInfo, AuthorityKind, AuthorityState, CaError};
use crate::datastore::AuthorityRecord;

/// Active first, then prepared, then old.
#[derive(Clone, Default)]
pub struct Authorities {
    pub x509: Vec<X509Authority>,
    pub jwt: Vec<JwtKey>,
}

/// A change asked of the authorities.
pub enum Command {
    /// Run the schedule up to now: prepare, activate, drop expired.
    Tick,
    /// Prepare a new authority now (the prepared one, if there is one).
    Prepare(AuthorityKind),
    /// Activate the prepared authority; the active one becomes old.
    Activate(AuthorityKind),
    /// Mark a non-active authority tainted.
    Taint(AuthorityKind, String),
    /// Remove a tainted, non-active authority from the bundle.
    Revoke(AuthorityKind, String),
    /// An authority generated for an earlier `Generate` effect.
    Add(Generated),
    /// The upstream's roots as they are now: every CA an upstream signed
    /// is published with them (an upstream root rotation reaches the
    /// bundle before the upstream signs with the new root).
    UpstreamRoots(Vec<Vec<u8>>),
}

/// What the manager must do for a command to complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Generate an authority of this kind, in this state, and `Add` it
    /// (then, for a tick, tick again).
    Generate(AuthorityKind, AuthorityState),
    /// The authority left the bundle: its private key can go.
    RemoveKey(AuthorityKind, String),
}

/// The outcome of one command.
pub struct Applied {
    pub next: Authorities,
    pub effects: Vec<Effect>,
    /// The authority the command was about, as it now stands.
    pub subject: Option<AuthorityInfo>,
}

/// Ticks apply at most this many transitions: each moves the state on.
const MAX_STEPS: usize = 16;

fn order<T: HasMeta>(list: &mut [T]) {
    list.sort_by_key(|a| match a.meta().state {
        AuthorityState::Active => 0,
        AuthorityState::Prepared => 1,
        AuthorityState::Old => 2,
    });
}

fn demote_active<T: HasMeta>(list: &mut [T]) {
    for a in list.iter_mut() {
        if a.meta().state == AuthorityState::Active {
            a.meta_mut().state = AuthorityState::Old;
        }
    }
}

fn info(kind: AuthorityKind, m: &Meta, certificate: Option<Vec<u8>>) -> AuthorityInfo {
    AuthorityInfo {
        kind,
        id: m.id.clone(),
        // The manager names the server.
        server_id: String::new(),
        state: m.state,
        tainted: m.tainted,
        not_before: unix_seconds(m.not_before),
        not_after: unix_seconds(m.not_after),
        certificate,
    }
}

fn not_found(kind: AuthorityKind, id: &str) -> CaError {
    CaError::NotFound(format!("{} authority {id:?}", kind.as_str()))
}

impl Authorities {
    pub fn metas(&self, kind: AuthorityKind) -> Vec<&Meta> {
        match kind {
            AuthorityKind::X509 => self.x509.iter().map(HasMeta::meta).collect(),
            AuthorityKind::Jwt => self.jwt.iter().map(HasMeta::meta).collect(),
        }
    }

    fn metas_mut(&mut self, kind: AuthorityKind) -> Vec<&mut Meta> {
        match kind {
            AuthorityKind::X509 => self.x509.iter_mut().map(HasMeta::meta_mut).collect(),
            AuthorityKind::Jwt => self.jwt.iter_mut().map(HasMeta::meta_mut).collect(),
        }
    }

    /// Every authority of `kind`: active, prepared, old.
    pub fn list(&self, kind: AuthorityKind) -> Vec<AuthorityInfo> {
        match kind {
            AuthorityKind::X509 => self
                .x509
                .iter()
                .map(|a| info(kind, &a.meta, Some(a.cert_der.clone())))
                .collect(),
            AuthorityKind::Jwt => self.jwt.iter().map(|a| info(kind, &a.meta, None)).collect(),
        }
    }

    fn find(&self, kind: AuthorityKind, id: &str) -> Option<AuthorityInfo> {
        self.list(kind).into_iter().find(|a| a.id == id)
    }

    /// The tainted authorities: X.509 ids and JWT kids.
    pub fn tainted(&self) -> (Vec<String>, Vec<String>) {
        let ids = |kind| {
            self.metas(kind)
                .into_iter()
                .filter(|m| m.tainted)
                .map(|m| m.id.clone())
                .collect()
        };
        (ids(AuthorityKind::X509), ids(AuthorityKind::Jwt))
    }

    fn step(&self, kind: AuthorityKind, schedule: &Schedule, now: SystemTime) -> Action {
        match kind {
            AuthorityKind::X509 => rotation::step(&self.x509, schedule, now),
            AuthorityKind::Jwt => rotation::step(&self.jwt, schedule, now),
        }
    }

    /// When a tick next has something to do.
    pub fn next_transition(&self, schedule: &Schedule, now: SystemTime) -> SystemTime {
        let at = |action| match action {
            Action::Wait(t) => t,
            _ => now,
        };
        at(self.step(AuthorityKind::X509, schedule, now)).min(at(self.step(
            AuthorityKind::Jwt,
            schedule,
            now,
        )))
    }

    /// Applies `command` at `now` to a copy of the authorities.
    pub fn apply(
        &self,
        now: SystemTime,
        schedule: &Schedule,
        command: Command,
    ) -> Result<Applied, CaError> {
        let mut next = self.clone();
        let mut effects = Vec::new();
        let subject = match command {
            Command::Tick => {
                for kind in [AuthorityKind::X509, AuthorityKind::Jwt] {
                    next.tick(kind, schedule, now, &mut effects);
                }
                None
            }
            Command::Prepare(kind) => {
                let prepared = next
                    .list(kind)
                    .into_iter()
                    .find(|a| a.state == AuthorityState::Prepared);
                if prepared.is_none() {
                    effects.push(Effect::Generate(kind, AuthorityState::Prepared));
                }
                prepared
            }
            Command::Activate(kind) => Some(next.activate(kind)?),
            Command::Taint(kind, id) => Some(next.taint(kind, &id)?),
            Command::Revoke(kind, id) => {
                let revoked = next.revoke(kind, &id)?;
                effects.push(Effect::RemoveKey(kind, id));
                Some(revoked)
            }
            Command::Add(generated) => Some(next.add(generated)),
            Command::UpstreamRoots(roots) => {
                for a in next
                    .x509
                    .iter_mut()
                    .filter(|a| !a.upstream_roots.is_empty())
                {
                    a.upstream_roots = roots.clone();
                }
                None
            }
        };
        Ok(Applied {
            next,
            effects,
            subject,
        })
    }

    /// Applies the schedule's transitions of `kind` until it waits or needs
    /// a new authority.
    fn tick(
        &mut self,
        kind: AuthorityKind,
        schedule: &Schedule,
        now: SystemTime,
        effects: &mut Vec<Effect>,
    ) {
        for _ in 0..MAX_STEPS {
            match self.step(kind, schedule, now) {
                Action::Wait(_) => return,
                Action::Generate(state) => {
                    effects.push(Effect::Generate(kind, state));
                    return;
                }
                Action::Activate => {
                    let _ = self.activate(kind);
                }
                Action::Drop(id) => {
                    match kind {
                        AuthorityKind::X509 => self.x509.retain(|a| a.meta.id != id),
                        AuthorityKind::Jwt => self.jwt.retain(|a| a.meta.id != id),
                    }
                    effects.push(Effect::RemoveKey(kind, id));
                }
            }
        }
    }

    fn add(&mut self, generated: Generated) -> AuthorityInfo {
        match generated {
            Generated::X509(a, _) => {
                if a.meta.state == AuthorityState::Active {
                    demote_active(&mut self.x509);
                }
                let shown = info(AuthorityKind::X509, &a.meta, Some(a.cert_der.clone()));
                self.x509.push(a);
                order(&mut self.x509);
                shown
            }
            Generated::Jwt(a, _) => {
                if a.meta.state == AuthorityState::Active {
                    demote_active(&mut self.jwt);
                }
                let shown = info(AuthorityKind::Jwt, &a.meta, None);
                self.jwt.push(a);
                order(&mut self.jwt);
                shown
            }
        }
    }

    fn activate(&mut self, kind: AuthorityKind) -> Result<AuthorityInfo, CaError> {
        let done = match kind {
            AuthorityKind::X509 => rotation::activate(&mut self.x509),
            AuthorityKind::Jwt => rotation::activate(&mut self.jwt),
        };
        if !done {
            return Err(CaError::FailedPrecondition(format!(
                "no prepared {} authority to activate; prepare one first",
                kind.as_str()
            )));
        }
        order(&mut self.x509);
        order(&mut self.jwt);
        let id = match kind {
            AuthorityKind::X509 => active(&self.x509).map(|a| a.meta.id.clone()),
            AuthorityKind::Jwt => active(&self.jwt).map(|a| a.meta.id.clone()),
        };
        id.and_then(|id| self.find(kind, &id))
            .ok_or_else(|| CaError::Key("no active authority after activation".into()))
    }

    fn taint(&mut self, kind: AuthorityKind, id: &str) -> Result<AuthorityInfo, CaError> {
        let mut metas = self.metas_mut(kind);
        let meta = metas
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or_else(|| not_found(kind, id))?;
        if meta.state == AuthorityState::Active {
            return Err(CaError::FailedPrecondition(format!(
                "{} authority {id} is active and cannot be tainted; prepare and activate another one first",
                kind.as_str()
            )));
        }
        meta.tainted = true;
        self.find(kind, id).ok_or_else(|| not_found(kind, id))
    }

    fn revoke(&mut self, kind: AuthorityKind, id: &str) -> Result<AuthorityInfo, CaError> {
        let found = self.find(kind, id).ok_or_else(|| not_found(kind, id))?;
        if found.state == AuthorityState::Active {
            return Err(CaError::FailedPrecondition(format!(
                "{} authority {id} is active and cannot be revoked; activate another one, then taint and revoke this one",
                kind.as_str()
            )));
        }
        if !found.tainted {
            return Err(CaError::FailedPrecondition(format!(
                "{} authority {id} is not tainted; taint it first",
                kind.as_str()
            )));
        }
        match kind {
            AuthorityKind::X509 => self.x509.retain(|a| a.meta.id != id),
            AuthorityKind::Jwt => self.jwt.retain(|a| a.meta.id != id),
        }
        Ok(found)
    }

    /// Takes in what other servers changed of ours in the store (`stored`:
    /// this server's rows as they are now): a taint is kept, and one that
    /// is gone was revoked. Returns those removed, whose keys can go.
    pub fn adopt(&mut self, stored: &[AuthorityRecord]) -> Vec<(AuthorityKind, String)> {
        let mut removed = Vec::new();
        for kind in [AuthorityKind::X509, AuthorityKind::Jwt] {
            let mut gone = Vec::new();
            for meta in self.metas_mut(kind) {
                match stored.iter().find(|r| r.kind == kind && r.id == meta.id) {
                    Some(r) => meta.tainted |= r.tainted,
                    None => gone.push(meta.id.clone()),
                }
            }
            match kind {
                AuthorityKind::X509 => self.x509.retain(|a| !gone.contains(&a.meta.id)),
                AuthorityKind::Jwt => self.jwt.retain(|a| !gone.contains(&a.meta.id)),
            }
            removed.extend(gone.into_iter().map(|id| (kind, id)));
        }
        removed
    }

    /// Whether this server holds the authority.
    pub fn holds(&self, kind: AuthorityKind, id: &str) -> bool {
        self.metas(kind).iter().any(|m| m.id == id)
    }

    /// True when both hold the same authorities in the same states, under
    /// the same upstream roots.
    pub fn same_as(&self, other: &Authorities) -> bool {
        let roots = |a: &Authorities| {
            a.x509
                .iter()
                .map(|x| x.upstream_roots.clone())
                .collect::<Vec<_>>()
        };
        [AuthorityKind::X509, AuthorityKind::Jwt]
            .into_iter()
            .all(|kind| self.metas(kind) == other.metas(kind))
            && roots(self) == roots(other)
    }
}

#[cfg(test)]
mod tests;
