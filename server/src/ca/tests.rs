use std::path::Path;

use rcgen::KeyPair;
use signet_core::clock::unix_seconds;
use signet_core::x509::{cert_info, validate_x509_svid};
use signet_core::ManualClock;

use super::*;
use crate::datastore::{Connection, SqliteDataStore};
use crate::events::{Change, ChangeBus};

fn settings(ttl: Duration) -> CaSettings {
    CaSettings {
        trust_domain: TrustDomain::new("example.org").unwrap(),
        ca_ttl: ttl,
        default_svid_ttl: Duration::from_secs(3600),
        default_jwt_svid_ttl: Duration::from_secs(300),
        backdate: Duration::from_secs(30),
        schedule: Default::default(),
        jwt_key_type: Default::default(),
        jwt_issuer: None,
        server_id: "s1".into(),
        upstream: None,
    }
}

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

struct Running {
    ca: CertificateAuthority,
    created: bool,
    ds: Arc<SqliteDataStore>,
}

/// A CA on a datastore and key directory in `dir`, as the server runs it.
async fn open(dir: &Path, ttl: Duration, clock: &Arc<ManualClock>) -> Running {
    let ds = Arc::new(
        SqliteDataStore::open(&dir.join("ds.sqlite3"))
            .await
            .unwrap(),
    );
    let keys = Arc::new(DiskKeys::new(dir.join("ca")));
    let (ca, created) = CertificateAuthority::start(settings(ttl), clock.clone(), ds.clone(), keys)
        .await
        .unwrap();
    Running { ca, created, ds }
}

impl Running {
    async fn stop(self) {
        drop(self.ca);
        self.ds.close().await;
    }
}

fn states(ca: &CertificateAuthority, kind: AuthorityKind) -> Vec<(String, AuthorityState, bool)> {
    ca.list(kind)
        .into_iter()
        .map(|a| (a.id, a.state, a.tainted))
        .collect()
}

#[tokio::test]
async fn ca_is_created_once_and_reused_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let day = Duration::from_secs(86400);
    let first = open(dir.path(), day, &clock).await;
    assert!(first.created);
    let bundle = first.ca.bundle();
    first.stop().await;
    let again = open(dir.path(), day, &clock).await;
    assert!(!again.created);
    assert_eq!(again.ca.bundle(), bundle);
    again.stop().await;

    clock.advance(Duration::from_secs(86401));
    let renewed = open(dir.path(), day, &clock).await;
    assert!(renewed.created, "an expired CA is replaced");
    let b = renewed.ca.bundle();
    assert_ne!(b.fingerprint(), bundle.fingerprint());
    // The JWT key lives as long as a CA: replaced too.
    assert_eq!(b.jwt_authorities.len(), 1);
    assert_ne!(b.jwt_authorities[0].kid, bundle.jwt_authorities[0].kid);
    assert!(b.sequence > bundle.sequence);
    renewed.stop().await;
}

#[tokio::test]
async fn private_keys_live_only_with_the_key_manager_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let r = open(dir.path(), Duration::from_secs(600), &clock).await;
    let x509 = r.ca.list(AuthorityKind::X509)[0].id.clone();
    let kid = r.ca.bundle().jwt_authorities[0].kid.clone();
    for path in [
        dir.path().join(format!("ca/x509/{x509}.key.pem")),
        dir.path().join(format!("ca/jwt/{kid}.key.pem")),
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path:?}");
    }
    // Nothing else in the CA's directory: no state file, no key copies.
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("ca"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["jwt", "x509"]);
    // A key gone missing: that authority is dropped and replaced.
    r.stop().await;
    std::fs::remove_file(dir.path().join(format!("ca/x509/{x509}.key.pem"))).unwrap();
    let r = open(dir.path(), Duration::from_secs(600), &clock).await;
    assert!(r.created);
    let ids: Vec<String> =
        r.ca.list(AuthorityKind::X509)
            .into_iter()
            .map(|a| a.id)
            .collect();
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], x509);
    r.stop().await;
}

#[tokio::test]
async fn jwt_svid_validates_against_the_bundle_and_ttl_is_capped() {
    use signet_core::jwt::{parse_unverified, validate_jwt_svid, JwtBundles, ValidationOptions};

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let r = open(dir.path(), Duration::from_secs(600), &clock).await;
    let ca = &r.ca;
    let bundle = ca.bundle();
    assert_eq!(bundle.jwt_authorities.len(), 1);
    let auth = &bundle.jwt_authorities[0];
    assert_eq!(auth.jwk.use_.as_deref(), Some("jwt-svid"));
    assert_eq!(auth.jwk.kid.as_deref(), Some(auth.kid.as_str()));
    assert_eq!(auth.expires_at, unix_seconds(ca.not_after()));

    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let aud = vec!["a".to_owned(), "b".to_owned()];
    let minted = ca.mint_jwt_svid(&id, &aud, None).unwrap();
    assert_eq!(minted.issued_at(), unix_seconds(start()));
    assert_eq!(minted.expires_at() - minted.issued_at(), 300);

    let mut bundles = JwtBundles::new();
    bundles.insert(
        id.trust_domain().clone(),
        [(
            auth.kid.clone(),
            signet_core::jwt::JwtPublicKey::from_jwk(&auth.jwk).unwrap(),
        )]
        .into_iter()
        .collect(),
    );
    let opts = ValidationOptions {
        now: start(),
        leeway: Duration::from_secs(0),
    };
    let v = validate_jwt_svid(&minted.svid.token, "b", &bundles, opts).unwrap();
    assert_eq!(v.spiffe_id, id);
    assert_eq!(v.kid, auth.kid);
    let (header, claims) = parse_unverified(&minted.svid.token).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(claims["aud"], serde_json::json!(["a", "b"]));
    let again = ca.mint_jwt_svid(&id, &aud, None).unwrap();
    let (_, claims2) = parse_unverified(&again.svid.token).unwrap();
    assert_ne!(claims["jti"], claims2["jti"]);

    // Per-entry TTL, then the CA's time left caps it.
    let short = ca
        .mint_jwt_svid(&id, &aud, Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(short.expires_at() - short.issued_at(), 30);
    clock.advance(Duration::from_secs(500));
    let capped = ca
        .mint_jwt_svid(&id, &aud, Some(Duration::from_secs(3600)))
        .unwrap();
    assert_eq!(capped.expires_at(), unix_seconds(ca.not_after()));
    clock.advance(Duration::from_secs(200));
    assert!(matches!(
        ca.mint_jwt_svid(&id, &aud, None),
        Err(CaError::Expired)
    ));
}

#[tokio::test]
async fn svid_ttl_is_capped_by_ca_time_left_and_back_dated() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let r = open(dir.path(), Duration::from_secs(600), &clock).await;
    let ca = &r.ca;
    let key = KeyPair::generate().unwrap();
    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let svid = ca
        .issue_x509_svid(&id, &key, &["web.local".into()], None)
        .unwrap();
    assert_eq!(svid.not_after, start() + Duration::from_secs(600));
    let info = cert_info(&svid.chain[0]).unwrap();
    assert_eq!(info.not_before, start() - Duration::from_secs(30));
    assert_eq!(info.not_after, svid.not_after, "as the certificate says");
    assert_eq!(info.serial_hex, svid.serial_hex, "as the certificate says");
    let got = validate_x509_svid(&svid.chain, &ca.bundle().x509_authorities, start()).unwrap();
    assert_eq!(got, id);

    let short = ca
        .issue_x509_svid(&id, &key, &[], Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(short.not_after, start() + Duration::from_secs(60));

    clock.advance(Duration::from_secs(700));
    assert!(matches!(
        ca.issue_x509_svid(&id, &key, &[], None),
        Err(CaError::Expired)
    ));
}

#[tokio::test]
async fn scheduled_rotation_taint_and_revoke_rules_and_state_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let ttl = Duration::from_secs(600);
    let r = open(dir.path(), ttl, &clock).await;
    // Activating with nothing prepared is refused.
    assert!(matches!(
        r.ca.activate(AuthorityKind::X509).await,
        Err(CaError::FailedPrecondition(_))
    ));
    let first = r.ca.list(AuthorityKind::X509)[0].id.clone();
    // X.509 life: 630 s (30 s back-dated); half-life at +285 s.
    clock.advance(Duration::from_secs(280));
    assert!(!r.ca.tick().await.unwrap());
    assert_eq!(r.ca.list(AuthorityKind::X509).len(), 1);
    clock.advance(Duration::from_secs(20));
    assert!(r.ca.tick().await.unwrap());
    let x = states(&r.ca, AuthorityKind::X509);
    assert_eq!(x.len(), 2);
    assert_eq!(x[1].1, AuthorityState::Prepared);
    let prepared = x[1].0.clone();
    // In the bundle before it signs anything; the active one still signs.
    assert_eq!(r.ca.bundle().x509_authorities.len(), 2);
    let key = KeyPair::generate().unwrap();
    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    assert_eq!(
        r.ca.issue_x509_svid(&id, &key, &[], None)
            .unwrap()
            .authority_id,
        first.as_str().into()
    );
    assert_eq!(
        r.ca.list(AuthorityKind::Jwt)[1].state,
        AuthorityState::Prepared
    );

    // Taint/revoke rules.
    let err = r.ca.taint(AuthorityKind::X509, &first).await.unwrap_err();
    assert!(matches!(&err, CaError::FailedPrecondition(m) if m.contains("activate")));
    assert!(matches!(
        r.ca.revoke(AuthorityKind::X509, &prepared).await,
        Err(CaError::FailedPrecondition(_))
    ));
    assert!(matches!(
        r.ca.taint(AuthorityKind::X509, "00").await,
        Err(CaError::NotFound(_))
    ));

    // Restart: same authorities, same states.
    let before = states(&r.ca, AuthorityKind::X509);
    r.stop().await;
    let r = open(dir.path(), ttl, &clock).await;
    assert_eq!(states(&r.ca, AuthorityKind::X509), before);

    // Activation at 1/6 of the life left (630 * 0.1667 = 105 s before +600).
    clock.set(start() + Duration::from_secs(490));
    assert!(!r.ca.tick().await.unwrap());
    clock.set(start() + Duration::from_secs(496));
    assert!(r.ca.tick().await.unwrap());
    let x = states(&r.ca, AuthorityKind::X509);
    assert_eq!(x[0], (prepared.clone(), AuthorityState::Active, false));
    assert_eq!(x[1], (first.clone(), AuthorityState::Old, false));
    assert_eq!(
        r.ca.issue_x509_svid(&id, &key, &[], None)
            .unwrap()
            .authority_id,
        prepared.as_str().into()
    );
    // The old one may now be tainted, then revoked: gone from the bundle.
    assert!(
        r.ca.taint(AuthorityKind::X509, &first)
            .await
            .unwrap()
            .tainted
    );
    assert_eq!(r.ca.tainted().0, vec![first.clone()]);
    r.stop().await;
    let r = open(dir.path(), ttl, &clock).await;
    assert_eq!(r.ca.tainted().0, vec![first.clone()]);
    r.ca.revoke(AuthorityKind::X509, &first).await.unwrap();
    assert_eq!(r.ca.bundle().x509_authorities.len(), 1);
    assert!(r.ca.tainted().0.is_empty());
    assert!(
        !dir.path().join(format!("ca/x509/{first}.key.pem")).exists(),
        "its key went with it"
    );

    // An old authority is dropped at its notAfter.
    r.ca.prepare(AuthorityKind::X509).await.unwrap();
    let newest = r.ca.activate(AuthorityKind::X509).await.unwrap();
    assert_eq!(r.ca.list(AuthorityKind::X509).len(), 2);
    let old_not_after = r.ca.list(AuthorityKind::X509)[1].not_after;
    clock.set(signet_core::clock::from_unix_seconds(old_not_after));
    assert!(r.ca.tick().await.unwrap());
    let x = r.ca.list(AuthorityKind::X509);
    assert!(x.iter().all(|a| a.id != prepared), "{x:?}");
    assert_eq!(x[0].id, newest.id);
    assert_eq!(x[0].state, AuthorityState::Active);
}

#[tokio::test]
async fn the_sequence_survives_restarts_moves_with_every_change_and_is_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let hour = Duration::from_secs(3600);
    let r = open(dir.path(), hour, &clock).await;
    let first = r.ca.bundle().sequence;
    assert_eq!(first, 1);
    r.stop().await;

    // Restart, nothing changed: same sequence.
    let r = open(dir.path(), hour, &clock).await;
    assert_eq!(r.ca.bundle().sequence, first);

    // A new JWT key (prepared): the sequence moves on, in one commit with
    // its event, and the published authorities reflect that event.
    let ds: Arc<dyn crate::datastore::DataStore> = r.ds.clone();
    let bus = ChangeBus::start(ds).await.unwrap();
    let (mut rx, _) = bus.subscribe();
    r.ca.prepare(AuthorityKind::Jwt).await.unwrap();
    let event = rx.recv().await.unwrap();
    assert_eq!(event.change, Change::BundleChanged);
    r.ca.caught_up(event.revision).await;
    let second = r.ca.bundle().sequence;
    assert!(second > first);
    assert_eq!(r.ca.bundle().jwt_authorities.len(), 2);
    // Tainting is its own event; the bundle (same keys) keeps its sequence.
    let old =
        r.ca.list(AuthorityKind::Jwt)
            .into_iter()
            .find(|a| a.state == AuthorityState::Active)
            .unwrap()
            .id;
    r.ca.activate(AuthorityKind::Jwt).await.unwrap();
    r.ca.taint(AuthorityKind::Jwt, &old).await.unwrap();
    assert_eq!(rx.recv().await.unwrap().change, Change::TaintedChanged);
    assert_eq!(r.ca.bundle().sequence, second);
    drop(bus);
    r.stop().await;

    // The CA expired and was replaced: again.
    clock.advance(Duration::from_secs(3601));
    let r = open(dir.path(), hour, &clock).await;
    assert!(r.ca.bundle().sequence > second);
    r.stop().await;
}

/// Admin commands racing the schedule, in random interleavings: whatever
/// order the manager takes them in, there is never more than one active
/// authority of a kind, never a revoked one in the bundle, and never a
/// bundle without the authority of an SVID that is still valid. Time is a
/// ManualClock moved by the test (the datastore's own timers rule out a
/// paused tokio clock); nothing sleeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_racing_the_timer_never_break_the_invariants() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let ttl = Duration::from_secs(600);
    let r = open(dir.path(), ttl, &clock).await;
    let ca = Arc::new(r.ca);
    let key = KeyPair::generate().unwrap();
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    // (authority, expiry) of everything signed.
    let mut signed: Vec<(String, SystemTime)> = Vec::new();
    let mut revoked: Vec<String> = Vec::new();
    for seed in 0..6_u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..25 {
            clock.advance(Duration::from_secs(rng.gen_range(0..120)));
            let kind = if rng.gen_bool(0.5) {
                AuthorityKind::X509
            } else {
                AuthorityKind::Jwt
            };
            let pick = |rng: &mut StdRng| {
                let all = ca.list(kind);
                all.get(rng.gen_range(0..all.len().max(1)))
                    .map(|a| a.id.clone())
                    .unwrap_or_default()
            };
            let (a, b) = (pick(&mut rng), pick(&mut rng));
            // Several commands and ticks in flight at once.
            let tasks: Vec<_> = (0..4)
                .map(|i| {
                    let ca = ca.clone();
                    let (a, b) = (a.clone(), b.clone());
                    let choice = rng.gen_range(0..6);
                    tokio::spawn(async move {
                        let _ = i;
                        match choice {
                            0 => ca.prepare(kind).await.map(|_| None),
                            1 => ca.activate(kind).await.map(|_| None),
                            2 => ca.taint(kind, &a).await.map(|_| None),
                            3 => ca.revoke(kind, &b).await.map(|a| Some(a.id)),
                            _ => ca.tick().await.map(|_| None),
                        }
                    })
                })
                .collect();
            for t in tasks {
                if let Ok(Some(id)) = t.await.unwrap() {
                    revoked.push(id);
                }
            }
            let now = clock.now();
            if let Ok(svid) = ca.issue_x509_svid(&id, &key, &[], None) {
                signed.push((svid.authority_id.to_string(), svid.not_after));
            }
            if let Ok(jwt) = ca.mint_jwt_svid(&id, &["a".into()], None) {
                signed.push((jwt.kid, jwt.svid.expires_at));
            }
            let snapshot = ca.subscribe().borrow().clone();
            for kind in [AuthorityKind::X509, AuthorityKind::Jwt] {
                let metas = snapshot.authorities.metas(kind);
                let active = metas
                    .iter()
                    .filter(|m| m.state == AuthorityState::Active)
                    .count();
                assert!(active <= 1, "{active} active {} authorities", kind.as_str());
                for m in metas {
                    assert!(!revoked.contains(&m.id), "revoked {} is back", m.id);
                }
            }
            let bundle = &snapshot.bundle;
            let in_bundle: Vec<String> = bundle
                .x509_authorities
                .iter()
                .map(|der| authority_id(der))
                .chain(bundle.jwt_authorities.iter().map(|j| j.kid.clone()))
                .collect();
            for (authority, expires) in &signed {
                if *expires > now && !revoked.contains(authority) {
                    assert!(
                        in_bundle.contains(authority),
                        "{authority} signed something valid until {expires:?} but left the bundle"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn a_joining_servers_first_ca_is_in_the_groups_bundle_before_it_signs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let ds: Arc<dyn crate::datastore::DataStore> = Arc::new(
        SqliteDataStore::open(&dir.path().join("ds.sqlite3"))
            .await
            .unwrap(),
    );
    let bus = ChangeBus::start(ds.clone()).await.unwrap();
    let server = |id: &str| CaSettings {
        server_id: id.into(),
        ..settings(Duration::from_secs(86400))
    };
    let keys = || Arc::new(MemoryKeys::default());
    let (a, _) = CertificateAuthority::start(server("a"), clock.clone(), ds.clone(), keys())
        .await
        .unwrap();
    a.follow(&bus);
    assert_eq!(a.bundle().x509_authorities.len(), 1);
    // B joins: by the time it can sign, A publishes B's CA too.
    let b_keys = Arc::new(DiskKeys::new(dir.path().join("b-keys")));
    let (b, created) =
        CertificateAuthority::start(server("b"), clock.clone(), ds.clone(), b_keys.clone())
            .await
            .unwrap();
    assert!(created);
    assert_eq!(a.bundle().x509_authorities.len(), 2);
    let key = KeyPair::generate().unwrap();
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let svid = b.issue_x509_svid(&id, &key, &[], None).unwrap();
    validate_x509_svid(&svid.chain, &a.bundle().x509_authorities, start()).unwrap();
    // A restart is no join: the CA is its own already, nothing waits.
    drop(b);
    let again = tokio::time::Instant::now();
    let (_, created) =
        CertificateAuthority::start(server("b"), clock.clone(), ds.clone(), b_keys.clone())
            .await
            .unwrap();
    assert!(!created);
    assert!(again.elapsed() < JOIN_GRACE);
}
