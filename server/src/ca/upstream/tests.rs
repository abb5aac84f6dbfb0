//! The two halves of `[upstream_authority.signet]` in process: the
//! upstream's signer makes a downstream CA; the downstream adopts it only
//! when it is its own and chains to the roots.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::KeyPair;
use signet_core::x509::{cert_info, leaf_params, sign_leaf, validate_x509_svid};
use signet_core::{ManualClock, TrustDomain};

use super::SignedCa;
use crate::ca::key_manager::{software_key, PrivateKey};
use crate::ca::keys::{adopt_signed_x509, Generated, X509Authority};
use crate::ca::{AuthorityKind, AuthorityState, CaError, CaSettings, CertificateAuthority};

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn edge_id() -> signet_core::SpiffeId {
    td().id("/site/edge-1").unwrap()
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn settings(ca_ttl: Duration) -> CaSettings {
    CaSettings {
        trust_domain: td(),
        ca_ttl,
        default_svid_ttl: Duration::from_secs(3600),
        default_jwt_svid_ttl: Duration::from_secs(300),
        backdate: Duration::from_secs(30),
        schedule: Default::default(),
        jwt_key_type: Default::default(),
        jwt_issuer: None,
        server_id: "up".into(),
        upstream: None,
    }
}

async fn upstream(dir: &std::path::Path, ca_ttl: Duration) -> CertificateAuthority {
    crate::ca::for_tests(dir, settings(ca_ttl), Arc::new(ManualClock::new(now()))).await
}

fn new_key() -> (PrivateKey, KeyPair) {
    let private = software_key(AuthorityKind::X509, Default::default()).unwrap();
    let PrivateKey::Software(der) = &private else {
        panic!("a software key")
    };
    let pair = KeyPair::try_from(der.as_slice()).unwrap();
    (private, pair)
}

fn adopt(signed: SignedCa, private: PrivateKey) -> Result<X509Authority, CaError> {
    match adopt_signed_x509(&td(), AuthorityState::Active, signed, private, now())? {
        Generated::X509(a, _) => Ok(a),
        Generated::Jwt(..) => panic!("an X.509 authority"),
    }
}

#[tokio::test]
async fn a_downstream_ca_never_outlives_the_signing_ca_and_its_svids_chain_to_the_roots() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path(), Duration::from_secs(3600)).await;
    let (private, pair) = new_key();
    let signed = up
        .sign_downstream_ca(&edge_id(), &pair, Some(Duration::from_secs(7200)))
        .unwrap();
    assert_eq!(
        signed.chain.len(),
        1,
        "a self-signed upstream has no intermediates"
    );
    assert_eq!(signed.roots, up.bundle().x509_authorities);
    let info = cert_info(&signed.chain[0]).unwrap();
    assert_eq!(info.not_after, up.not_after());
    assert_eq!(info.spiffe_id.unwrap().to_string(), "spiffe://example.org");
    // Its own subject: OpenSSL takes subject == issuer for a self-signed root.
    let (_, cert) = x509_parser::parse_x509_certificate(&signed.chain[0]).unwrap();
    assert_ne!(cert.subject(), cert.issuer());
    assert!(cert
        .subject()
        .to_string()
        .contains("spiffe://example.org/site/edge-1"));

    let edge = adopt(signed.clone(), private).unwrap();
    assert_eq!(
        edge.bundle_certs().collect::<Vec<_>>(),
        vec![signed.roots[0].as_slice()]
    );
    // An SVID the edge signs goes out with its CA and validates upstream.
    let leaf_key = KeyPair::generate().unwrap();
    let id = td().id("/edge/workload").unwrap();
    let params = leaf_params(&id, &[], now(), now() + Duration::from_secs(60)).unwrap();
    let leaf = sign_leaf(&params, &leaf_key, &*edge.issuer).unwrap();
    let chain: Vec<Vec<u8>> = std::iter::once(leaf)
        .chain(edge.intermediates().map(<[u8]>::to_vec))
        .collect();
    assert_eq!(chain.len(), 2);
    assert_eq!(
        validate_x509_svid(&chain, &signed.roots, now()).unwrap(),
        id
    );
}

#[tokio::test]
async fn no_ttl_asked_is_as_long_as_the_signing_ca() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path(), Duration::from_secs(600)).await;
    let (_, pair) = new_key();
    let short = up
        .sign_downstream_ca(&edge_id(), &pair, Some(Duration::from_secs(60)))
        .unwrap();
    let whole = up.sign_downstream_ca(&edge_id(), &pair, None).unwrap();
    let end = |s: &SignedCa| cert_info(&s.chain[0]).unwrap().not_after;
    assert_eq!(end(&short), now() + Duration::from_secs(60));
    assert_eq!(end(&whole), up.not_after());
}

#[tokio::test]
async fn a_ca_for_another_key_or_off_the_roots_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path(), Duration::from_secs(3600)).await;
    let (_, pair) = new_key();
    let signed = up.sign_downstream_ca(&edge_id(), &pair, None).unwrap();

    let (other_private, _) = new_key();
    let Err(err) = adopt(signed.clone(), other_private) else {
        panic!("adopted a CA for another key")
    };
    assert!(
        matches!(&err, CaError::Upstream(m) if m.contains("not for our key")),
        "{err}"
    );

    let (private, pair) = new_key();
    let mut signed = up.sign_downstream_ca(&edge_id(), &pair, None).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    signed.roots = upstream(elsewhere.path(), Duration::from_secs(3600))
        .await
        .bundle()
        .x509_authorities;
    let Err(err) = adopt(signed, private) else {
        panic!("adopted a CA off the roots")
    };
    assert!(
        matches!(&err, CaError::Upstream(m) if m.contains("does not chain")),
        "{err}"
    );

    let (private, _) = new_key();
    let empty = SignedCa {
        chain: vec![],
        roots: vec![],
    };
    assert!(matches!(adopt(empty, private), Err(CaError::Upstream(_))));
}

#[tokio::test]
async fn jwt_keys_rotate_on_while_the_upstream_cannot_sign_a_ca() {
    use crate::ca::{AuthorityKind, DiskKeys};
    use crate::datastore::{Connection, SqliteDataStore};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(now()));
    let open = |upstream| {
        let clock = clock.clone();
        let dir = dir.path().to_owned();
        async move {
            let ds = Arc::new(
                SqliteDataStore::open(&dir.join("ds.sqlite3"))
                    .await
                    .unwrap(),
            );
            let keys = Arc::new(DiskKeys::new(dir.join("ca")));
            let settings = CaSettings {
                server_id: "edge".into(),
                upstream,
                ..settings(Duration::from_secs(3600))
            };
            let (ca, _) = CertificateAuthority::start(settings, clock, ds.clone(), keys)
                .await
                .unwrap();
            (ca, ds)
        }
    };
    // A CA from before (signed then), past its prepare point now.
    let (ca, ds) = open(None).await;
    drop(ca);
    ds.close().await;
    clock.advance(Duration::from_secs(40 * 60));
    let unreachable = super::UpstreamSignet {
        server_address: "127.0.0.1:1".into(),
        trust_bundle_path: dir.path().join("none.pem"),
        workload_api_socket: dir.path().join("no-agent.sock"),
        timeout: Duration::from_secs(1),
        spiffe_id: None,
    };
    let (ca, _ds) = open(Some(super::UpstreamSettings::Signet(unreachable))).await;
    let prepared = |kind| {
        ca.list(kind)
            .iter()
            .filter(|a| a.state == AuthorityState::Prepared)
            .count()
    };
    assert_eq!(
        prepared(AuthorityKind::X509),
        0,
        "the upstream signed nothing"
    );
    assert_eq!(
        prepared(AuthorityKind::Jwt),
        1,
        "the JWT key rotates regardless"
    );
    assert!(
        ca.not_after() > now() + Duration::from_secs(40 * 60),
        "the CA signs on"
    );
    assert!(matches!(ca.tick().await, Err(CaError::Upstream(_))));
}

#[tokio::test]
async fn new_upstream_roots_replace_those_of_upstream_signed_cas_only() {
    use crate::ca::authorities::{Authorities, Command};
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path(), Duration::from_secs(3600)).await;
    let (private, pair) = new_key();
    let signed = up.sign_downstream_ca(&edge_id(), &pair, None).unwrap();
    let edge = adopt(signed, private).unwrap();
    let (own_key, _) = new_key();
    let Generated::X509(self_signed, _) = crate::ca::keys::generate_x509(
        &td(),
        Duration::from_secs(3600),
        now(),
        AuthorityState::Old,
        None,
        own_key,
    )
    .unwrap() else {
        panic!("an X.509 authority")
    };
    let before = Authorities {
        x509: vec![edge, self_signed],
        jwt: Vec::new(),
    };
    let elsewhere = tempfile::tempdir().unwrap();
    let other = upstream(elsewhere.path(), Duration::from_secs(3600)).await;
    let mut roots = up.bundle().x509_authorities;
    roots.extend(other.bundle().x509_authorities);
    let applied = before
        .apply(
            now(),
            &Default::default(),
            Command::UpstreamRoots(roots.clone()),
        )
        .unwrap();
    assert!(applied.effects.is_empty());
    assert_eq!(applied.next.x509[0].upstream_roots, roots);
    assert!(
        applied.next.x509[1].upstream_roots.is_empty(),
        "self-signed stays so"
    );
    assert!(!applied.next.same_as(&before), "a change to commit");
    let again = applied
        .next
        .apply(now(), &Default::default(), Command::UpstreamRoots(roots))
        .unwrap();
    assert!(
        again.next.same_as(&applied.next),
        "nothing new, nothing to commit"
    );
}
