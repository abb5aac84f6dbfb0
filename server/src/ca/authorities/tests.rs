//! Every command from every relevant state, without a clock or a disk.

use std::time::{Duration, SystemTime};

use signet_core::TrustDomain;

use super::*;
use crate::ca::key_manager::software_key;
use crate::ca::keys::{generate_jwt, generate_x509};

const TTL: Duration = Duration::from_secs(600);

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn at(secs: u64) -> SystemTime {
    t0() + Duration::from_secs(secs)
}

fn x509(state: AuthorityState, now: SystemTime) -> Generated {
    generate_x509(
        &TrustDomain::new("example.org").unwrap(),
        TTL,
        now,
        state,
        None,
        software_key(AuthorityKind::X509, Default::default()).unwrap(),
    )
    .unwrap()
}

fn jwt(state: AuthorityState, now: SystemTime) -> Generated {
    let key = software_key(AuthorityKind::Jwt, Default::default()).unwrap();
    generate_jwt(TTL, now, state, key).unwrap()
}

fn run(a: &Authorities, now: SystemTime, c: Command) -> Applied {
    a.apply(now, &Schedule::default(), c).unwrap()
}

fn refused(a: &Authorities, c: Command) -> CaError {
    match a.apply(t0(), &Schedule::default(), c) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

/// One active X.509 CA and JWT key, generated at t0.
fn started() -> Authorities {
    let a = run(
        &Authorities::default(),
        t0(),
        Command::Add(x509(AuthorityState::Active, t0())),
    )
    .next;
    run(&a, t0(), Command::Add(jwt(AuthorityState::Active, t0()))).next
}

fn states(a: &Authorities, kind: AuthorityKind) -> Vec<(String, AuthorityState, bool)> {
    a.metas(kind)
        .into_iter()
        .map(|m| (m.id.clone(), m.state, m.tainted))
        .collect()
}

fn id(a: &Authorities, kind: AuthorityKind, i: usize) -> String {
    a.metas(kind)[i].id.clone()
}

#[test]
fn a_tick_with_nothing_asks_for_an_active_authority_of_each_kind() {
    let out = run(&Authorities::default(), t0(), Command::Tick);
    assert_eq!(
        out.effects,
        [
            Effect::Generate(AuthorityKind::X509, AuthorityState::Active),
            Effect::Generate(AuthorityKind::Jwt, AuthorityState::Active)
        ]
    );
    assert!(out.subject.is_none());
}

#[test]
fn a_tick_before_half_life_does_nothing_and_says_when_to_wake() {
    let a = started();
    let out = run(&a, at(200), Command::Tick);
    assert!(out.effects.is_empty());
    assert!(out.next.same_as(&a));
    // Half of the CA's 630 s (30 s back-dated) life: +285 s.
    assert_eq!(a.next_transition(&Schedule::default(), at(200)), at(285));
}

#[test]
fn a_tick_at_half_life_prepares_then_activates_then_drops_the_old_one() {
    let a = started();
    let out = run(&a, at(300), Command::Tick);
    assert_eq!(
        out.effects,
        [
            Effect::Generate(AuthorityKind::X509, AuthorityState::Prepared),
            Effect::Generate(AuthorityKind::Jwt, AuthorityState::Prepared)
        ]
    );
    let a = run(
        &a,
        at(300),
        Command::Add(x509(AuthorityState::Prepared, at(300))),
    )
    .next;
    let first = id(&a, AuthorityKind::X509, 0);
    let second = id(&a, AuthorityKind::X509, 1);
    // A sixth of the life left: the prepared one becomes active.
    let a = run(&a, at(530), Command::Tick).next;
    assert_eq!(
        states(&a, AuthorityKind::X509),
        [
            (second.clone(), AuthorityState::Active, false),
            (first.clone(), AuthorityState::Old, false)
        ]
    );
    // The old one stays until its notAfter, then goes with its key.
    let out = run(&a, at(600), Command::Tick);
    assert!(out
        .effects
        .contains(&Effect::RemoveKey(AuthorityKind::X509, first.clone())));
    assert_eq!(out.next.metas(AuthorityKind::X509).len(), 1);
}

#[test]
fn prepare_asks_for_a_key_once_and_then_returns_the_prepared_one() {
    let a = started();
    let out = run(&a, t0(), Command::Prepare(AuthorityKind::Jwt));
    assert_eq!(
        out.effects,
        [Effect::Generate(
            AuthorityKind::Jwt,
            AuthorityState::Prepared
        )]
    );
    let added = run(&a, t0(), Command::Add(jwt(AuthorityState::Prepared, t0())));
    let shown = added.subject.unwrap();
    assert_eq!(shown.state, AuthorityState::Prepared);
    let again = run(&added.next, t0(), Command::Prepare(AuthorityKind::Jwt));
    assert!(again.effects.is_empty());
    assert_eq!(again.subject.unwrap().id, shown.id);
}

#[test]
fn adding_an_active_authority_makes_the_active_one_old() {
    let a = started();
    let before = id(&a, AuthorityKind::X509, 0);
    let a = run(&a, t0(), Command::Add(x509(AuthorityState::Active, t0()))).next;
    let s = states(&a, AuthorityKind::X509);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].1, AuthorityState::Active);
    assert_eq!(s[1], (before, AuthorityState::Old, false));
}

#[test]
fn activate_needs_a_prepared_authority() {
    let a = started();
    assert!(matches!(
        refused(&a, Command::Activate(AuthorityKind::X509)),
        CaError::FailedPrecondition(m) if m.contains("prepare one first")
    ));
    let a = run(&a, t0(), Command::Add(x509(AuthorityState::Prepared, t0()))).next;
    let prepared = id(&a, AuthorityKind::X509, 1);
    let out = run(&a, t0(), Command::Activate(AuthorityKind::X509));
    assert_eq!(out.subject.unwrap().id, prepared);
    assert_eq!(
        out.next.metas(AuthorityKind::X509)[0].state,
        AuthorityState::Active
    );
    assert_eq!(
        out.next.metas(AuthorityKind::X509)[1].state,
        AuthorityState::Old
    );
}

#[test]
fn taint_refuses_the_active_and_unknown_ones_and_marks_the_others() {
    let a = started();
    let active = id(&a, AuthorityKind::Jwt, 0);
    assert!(matches!(
        refused(&a, Command::Taint(AuthorityKind::Jwt, active.clone())),
        CaError::FailedPrecondition(m) if m.contains("activate another")
    ));
    assert!(matches!(
        refused(&a, Command::Taint(AuthorityKind::Jwt, "00".into())),
        CaError::NotFound(_)
    ));
    let a = run(&a, t0(), Command::Add(jwt(AuthorityState::Active, t0()))).next;
    let out = run(&a, t0(), Command::Taint(AuthorityKind::Jwt, active.clone()));
    assert!(out.subject.unwrap().tainted);
    assert_eq!(out.next.tainted().1, vec![active]);
    assert!(out.effects.is_empty());
}

#[test]
fn revoke_takes_only_a_tainted_non_active_authority_and_its_key() {
    let a = started();
    let first = id(&a, AuthorityKind::X509, 0);
    assert!(matches!(
        refused(&a, Command::Revoke(AuthorityKind::X509, first.clone())),
        CaError::FailedPrecondition(m) if m.contains("is active")
    ));
    let a = run(&a, t0(), Command::Add(x509(AuthorityState::Active, t0()))).next;
    assert!(matches!(
        refused(&a, Command::Revoke(AuthorityKind::X509, first.clone())),
        CaError::FailedPrecondition(m) if m.contains("taint it first")
    ));
    let a = run(&a, t0(), Command::Taint(AuthorityKind::X509, first.clone())).next;
    let out = run(
        &a,
        t0(),
        Command::Revoke(AuthorityKind::X509, first.clone()),
    );
    assert_eq!(out.subject.unwrap().id, first);
    assert_eq!(
        out.effects,
        [Effect::RemoveKey(AuthorityKind::X509, first.clone())]
    );
    assert!(out
        .next
        .metas(AuthorityKind::X509)
        .iter()
        .all(|m| m.id != first));
    assert!(out.next.tainted().0.is_empty());
    assert!(matches!(
        refused(&out.next, Command::Revoke(AuthorityKind::X509, first)),
        CaError::NotFound(_)
    ));
}

#[test]
fn an_expired_active_authority_is_replaced_by_the_prepared_one_or_a_new_one() {
    let a = started();
    let out = run(&a, at(700), Command::Tick);
    assert!(out.effects.contains(&Effect::Generate(
        AuthorityKind::X509,
        AuthorityState::Active
    )));
    let a = run(
        &a,
        t0(),
        Command::Add(x509(AuthorityState::Prepared, at(100))),
    )
    .next;
    let prepared = id(&a, AuthorityKind::X509, 1);
    let out = run(&a, at(601), Command::Tick);
    assert_eq!(out.next.metas(AuthorityKind::X509)[0].id, prepared);
    assert_eq!(
        out.next.metas(AuthorityKind::X509)[0].state,
        AuthorityState::Active
    );
}

#[test]
fn apply_leaves_the_state_it_was_given_alone() {
    let a = started();
    let before = states(&a, AuthorityKind::X509);
    let _ = run(&a, t0(), Command::Add(x509(AuthorityState::Active, t0())));
    let _ = run(&a, at(700), Command::Tick);
    let _ = a.apply(
        t0(),
        &Schedule::default(),
        Command::Activate(AuthorityKind::X509),
    );
    assert_eq!(states(&a, AuthorityKind::X509), before);
}
