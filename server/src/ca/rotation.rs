//! The authority state machine, the same for X.509 CAs and JWT keys:
//! prepared → active → old. A new authority is prepared at `prepare_at` of
//! the active one's life and activated when `activate_at` of it is left; an
//! old one is dropped once everything it signed has expired (its notAfter).

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityState {
    Prepared,
    Active,
    Old,
}

impl AuthorityState {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorityState::Prepared => "prepared",
            AuthorityState::Active => "active",
            AuthorityState::Old => "old",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "prepared" => Some(AuthorityState::Prepared),
            "active" => Some(AuthorityState::Active),
            "old" => Some(AuthorityState::Old),
            _ => None,
        }
    }
}

/// What every authority carries besides its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub id: String,
    pub state: AuthorityState,
    pub tainted: bool,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

pub trait HasMeta {
    fn meta(&self) -> &Meta;
    fn meta_mut(&mut self) -> &mut Meta;
}

/// When to prepare and activate, as fractions of an authority's lifetime.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Prepare the next authority once this fraction of the active one's
    /// life has passed (default ½).
    pub prepare_at: f64,
    /// Activate the prepared one when this fraction of the active one's life
    /// is left (default ⅙).
    pub activate_at: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            prepare_at: 0.5,
            activate_at: 0.1667,
        }
    }
}

fn life(m: &Meta) -> Duration {
    m.not_after
        .duration_since(m.not_before)
        .unwrap_or(Duration::ZERO)
}

impl Schedule {
    pub fn prepare_time(&self, active: &Meta) -> SystemTime {
        active.not_before + life(active).mul_f64(self.prepare_at.clamp(0.0, 1.0))
    }

    pub fn activate_time(&self, active: &Meta) -> SystemTime {
        active.not_after - life(active).mul_f64(self.activate_at.clamp(0.0, 1.0))
    }
}

/// What [`step`] wants done next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do before the given time.
    Wait(SystemTime),
    /// Generate a new authority: active at once (none usable) or prepared.
    Generate(AuthorityState),
    /// Activate the prepared authority (the active one becomes old).
    Activate,
    /// Drop the authority with this id (expired).
    Drop(String),
}

pub fn active<T: HasMeta>(list: &[T]) -> Option<&T> {
    list.iter()
        .find(|a| a.meta().state == AuthorityState::Active)
}

pub fn prepared<T: HasMeta>(list: &[T]) -> Option<&T> {
    list.iter()
        .find(|a| a.meta().state == AuthorityState::Prepared)
}

/// The next action for `list` at `now`; apply it and call again until it is
/// `Wait`.
pub fn step<T: HasMeta>(list: &[T], schedule: &Schedule, now: SystemTime) -> Action {
    if let Some(expired) = list
        .iter()
        .find(|a| a.meta().not_after <= now && a.meta().state != AuthorityState::Active)
    {
        return Action::Drop(expired.meta().id.clone());
    }
    let usable_prepared = prepared(list).filter(|p| p.meta().not_after > now);
    let Some(act) = active(list).filter(|a| a.meta().not_after > now) else {
        return match usable_prepared {
            Some(_) => Action::Activate,
            None => Action::Generate(AuthorityState::Active),
        };
    };
    let a = act.meta();
    match usable_prepared {
        None if now >= schedule.prepare_time(a) => Action::Generate(AuthorityState::Prepared),
        Some(_) if now >= schedule.activate_time(a) => Action::Activate,
        other => {
            let mut next = if other.is_none() {
                schedule.prepare_time(a)
            } else {
                schedule.activate_time(a)
            };
            next = next.min(a.not_after);
            for m in list.iter().map(HasMeta::meta) {
                if m.state != AuthorityState::Active {
                    next = next.min(m.not_after);
                }
            }
            Action::Wait(next)
        }
    }
}

/// Makes the (first) prepared authority active and the active one old.
pub fn activate<T: HasMeta>(list: &mut [T]) -> bool {
    let Some(next) = list
        .iter()
        .position(|a| a.meta().state == AuthorityState::Prepared)
    else {
        return false;
    };
    for (i, a) in list.iter_mut().enumerate() {
        let m = a.meta_mut();
        if i == next {
            m.state = AuthorityState::Active;
        } else if m.state == AuthorityState::Active {
            m.state = AuthorityState::Old;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct A(Meta);
    impl HasMeta for A {
        fn meta(&self) -> &Meta {
            &self.0
        }
        fn meta_mut(&mut self) -> &mut Meta {
            &mut self.0
        }
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn a(id: &str, state: AuthorityState, nb: u64, na: u64) -> A {
        A(Meta {
            id: id.into(),
            state,
            tainted: false,
            not_before: t(nb),
            not_after: t(na),
        })
    }

    #[test]
    fn prepare_at_half_life_activate_at_a_sixth_left_drop_after_expiry() {
        let s = Schedule::default();
        let mut list = vec![a("1", AuthorityState::Active, 0, 600)];
        // Nothing before half-life; it says when to wake.
        assert_eq!(step(&list, &s, t(299)), Action::Wait(t(300)));
        assert_eq!(
            step(&list, &s, t(300)),
            Action::Generate(AuthorityState::Prepared)
        );
        list.push(a("2", AuthorityState::Prepared, 300, 900));
        let act = 600 - 100; // 600 * 0.1667 = 100.02 s left
        let Action::Wait(w) = step(&list, &s, t(301)) else {
            panic!()
        };
        assert!(w > t(act - 2) && w <= t(act));
        assert_eq!(step(&list, &s, t(act)), Action::Activate);
        assert!(activate(&mut list));
        assert_eq!(list[0].0.state, AuthorityState::Old);
        assert_eq!(list[1].0.state, AuthorityState::Active);
        // The old one stays until its notAfter, then is dropped.
        assert_eq!(step(&list, &s, t(599)), Action::Wait(t(600)));
        assert_eq!(step(&list, &s, t(600)), Action::Drop("1".into()));
        list.remove(0);
        // The new one: prepared at its own half-life (300 + 300).
        assert_eq!(
            step(&list, &s, t(601)),
            Action::Generate(AuthorityState::Prepared)
        );
    }

    #[test]
    fn no_usable_active_means_activate_the_prepared_or_generate() {
        let s = Schedule::default();
        assert_eq!(
            step::<A>(&[], &s, t(0)),
            Action::Generate(AuthorityState::Active)
        );
        let list = vec![
            a("1", AuthorityState::Active, 0, 100),
            a("2", AuthorityState::Prepared, 50, 150),
        ];
        assert_eq!(step(&list, &s, t(100)), Action::Activate);
        let mut none = vec![a("1", AuthorityState::Active, 0, 100)];
        assert!(!activate(&mut none));
        assert_eq!(
            step(&none, &s, t(100)),
            Action::Generate(AuthorityState::Active)
        );
    }
}
