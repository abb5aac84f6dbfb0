//! The Node API end to end, in process: a real server on a free port, agents
//! attesting over TLS, then mTLS for sync, signing and renewal; changes made
//! through the Admin API reach the sync stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use signet_core::Clock;
use support::{node_client, tls_alert};

use std::sync::Arc;
use std::time::Duration;

use rcgen::KeyPair;
use signet_core::x509::{build_csr, cert_info, validate_x509_svid};
use signet_core::{ShiftedClock, SpiffeId, SystemClock};
use signet_proto::admin::admin_client::AdminClient;
use signet_proto::admin::{self, AgentRequest, CreateJoinTokenRequest, DeleteEntryRequest};
use signet_proto::node::{
    attest_params, attest_request, attest_response, AttestParams, AttestRequest, AttestResult,
    BatchSignX509SvidRequest, RenewAgentRequest, SignX509SvidParams, SyncRequest,
};
use signet_server::app::{start, RunningServer};
use signet_server::config::{FileConfig, RuntimeConfig};
use tonic::transport::Channel;
use tonic::Code;

struct Fixture {
    _dir: tempfile::TempDir,
    server: RunningServer,
    admin: AdminClient<Channel>,
    bundle: Vec<Vec<u8>>,
    /// The server's clock: the real time until a test moves it on.
    clock: Arc<ShiftedClock>,
}

async fn fixture(extra: FileConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = FileConfig {
        data_dir: Some(dir.path().join("data")),
        admin_socket: Some(dir.path().join("admin.sock")),
        bind: Some("127.0.0.1:0".into()),
        ..FileConfig::default()
    };
    let config = RuntimeConfig::try_from(file.merge(extra)).unwrap();
    let clock = Arc::new(ShiftedClock::new());
    let server = start(config, clock.clone()).await.unwrap();
    let mut admin = signet_server::cli::client::connect(&server.admin_socket)
        .await
        .unwrap();
    let bundle = admin
        .get_bundle(admin::GetBundleRequest {})
        .await
        .unwrap()
        .into_inner()
        .x509_authorities;
    Fixture {
        _dir: dir,
        server,
        admin,
        bundle,
        clock,
    }
}

struct Agent {
    id: SpiffeId,
    chain: Vec<Vec<u8>>,
    key: KeyPair,
}

async fn attest(f: &Fixture, token: &str) -> Result<AttestResult, tonic::Status> {
    let key = KeyPair::generate().unwrap();
    let placeholder = SpiffeId::parse("spiffe://example.org/ignored").unwrap();
    let csr = build_csr(&key, &placeholder).unwrap();
    let mut client = node_client(f.server.node_addr, &f.bundle, None)
        .await
        .unwrap();
    let req = AttestRequest {
        step: Some(attest_request::Step::Params(AttestParams {
            method: Some(attest_params::Method::JoinToken(token.into())),
            csr,
        })),
    };
    let mut stream = client.attest(tokio_stream::once(req)).await?.into_inner();
    match stream.message().await?.and_then(|m| m.step) {
        Some(attest_response::Step::Result(r)) => Ok(r),
        other => panic!("unexpected attest answer {other:?}"),
    }
}

async fn new_agent(f: &mut Fixture) -> Agent {
    let token = token(f, 0).await;
    let key = KeyPair::generate().unwrap();
    let id = SpiffeId::parse(&format!(
        "spiffe://example.org/signet/agent/join_token/{token}"
    ))
    .unwrap();
    let mut client = node_client(f.server.node_addr, &f.bundle, None)
        .await
        .unwrap();
    let req = AttestRequest {
        step: Some(attest_request::Step::Params(AttestParams {
            method: Some(attest_params::Method::JoinToken(token)),
            csr: build_csr(&key, &id).unwrap(),
        })),
    };
    let mut stream = client
        .attest(tokio_stream::once(req))
        .await
        .unwrap()
        .into_inner();
    let Some(attest_response::Step::Result(r)) = stream.message().await.unwrap().unwrap().step
    else {
        panic!("no result")
    };
    assert_eq!(r.spiffe_id, id.to_string());
    let got = validate_x509_svid(&r.svid_chain, &f.bundle, SystemClock.now()).unwrap();
    assert_eq!(got, id);
    Agent {
        id,
        chain: r.svid_chain,
        key,
    }
}

async fn token(f: &mut Fixture, ttl: u32) -> String {
    f.admin
        .create_join_token(CreateJoinTokenRequest { ttl })
        .await
        .unwrap()
        .into_inner()
        .token
}

async fn create_entry(f: &mut Fixture, spiffe_id: &str, parent: &SpiffeId) -> admin::Entry {
    f.admin
        .create_entry(admin::Entry {
            spiffe_id: spiffe_id.into(),
            parent_id: parent.to_string(),
            selectors: vec!["unix:uid:1000".into()],
            x509_svid_ttl: 120,
            dns_names: vec!["web.local".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn join_token_attests_once_and_refuses_reuse_and_expiry() {
    let mut f = fixture(FileConfig::default()).await;
    let t = token(&mut f, 0).await;
    let r = attest(&f, &t).await.unwrap();
    assert!(r
        .spiffe_id
        .ends_with(&format!("/signet/agent/join_token/{t}")));
    assert_eq!(r.bundle.unwrap().x509_authorities, f.bundle);
    let err = attest(&f, &t).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        err.message(),
        "join token does not exist or has already been used"
    );

    let short = token(&mut f, 1).await;
    // Past its one-second TTL on the server's clock.
    f.clock.advance(Duration::from_secs(2));
    let err = attest(&f, &short).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::PermissionDenied, "join token expired")
    );
    f.server.stop().await;
}

#[tokio::test]
async fn sync_signing_renewal_and_ban_over_mtls() {
    let mut f = fixture(FileConfig::default()).await;
    let agent = new_agent(&mut f).await;
    let other = new_agent(&mut f).await;
    let mine = create_entry(&mut f, "spiffe://example.org/web", &agent.id).await;
    let theirs = create_entry(&mut f, "spiffe://example.org/db", &other.id).await;

    let mut client = node_client(
        f.server.node_addr,
        &f.bundle,
        Some((&agent.chain, &agent.key)),
    )
    .await
    .unwrap();
    let mut sync = client
        .sync(SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let snap = sync.message().await.unwrap().unwrap();
    assert!(snap.snapshot);
    assert_eq!(snap.entries.len(), 1);
    assert_eq!(snap.entries[0].id, mine.id);
    assert_eq!(snap.bundle.unwrap().x509_authorities, f.bundle);

    // Changes arrive as they happen, only for this agent's entries.
    create_entry(&mut f, "spiffe://example.org/db2", &other.id).await;
    let added = create_entry(&mut f, "spiffe://example.org/api", &agent.id).await;
    let msg = tokio::time::timeout(Duration::from_secs(2), sync.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!msg.snapshot && msg.revision > snap.revision);
    assert_eq!(msg.entries[0].id, added.id);
    f.admin
        .delete_entry(DeleteEntryRequest {
            id: added.id.clone(),
        })
        .await
        .unwrap();
    let msg2 = tokio::time::timeout(Duration::from_secs(2), sync.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(msg2.removed_entry_ids, vec![added.id]);
    assert!(msg2.revision > msg.revision);

    // Signing: authorized, foreign entry, mismatched CSR, unknown entry.
    let wkey = KeyPair::generate().unwrap();
    let web = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let csr = build_csr(&wkey, &web).unwrap();
    let resp = client
        .batch_sign_x509_svid(BatchSignX509SvidRequest {
            params: vec![
                SignX509SvidParams {
                    entry_id: mine.id.clone(),
                    csr: csr.clone(),
                },
                SignX509SvidParams {
                    entry_id: theirs.id.clone(),
                    csr: csr.clone(),
                },
                SignX509SvidParams {
                    entry_id: mine.id.clone(),
                    csr: build_csr(&wkey, &SpiffeId::parse("spiffe://example.org/db").unwrap())
                        .unwrap(),
                },
                SignX509SvidParams {
                    entry_id: "nope".into(),
                    csr: csr.clone(),
                },
                SignX509SvidParams {
                    entry_id: mine.id.clone(),
                    csr: b"junk".to_vec(),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(resp[0].error_code, 0, "{}", resp[0].error_message);
    assert_eq!(
        validate_x509_svid(&resp[0].svid_chain, &f.bundle, SystemClock.now()).unwrap(),
        web
    );
    let info = cert_info(&resp[0].svid_chain[0]).unwrap();
    let ttl = info.not_after.duration_since(info.not_before).unwrap();
    assert_eq!(
        ttl,
        Duration::from_secs(150),
        "entry TTL 120 s plus 30 s back-dating"
    );
    assert_eq!(Code::from(resp[1].error_code), Code::PermissionDenied);
    assert_eq!(
        resp[1].error_message,
        "entry is not authorized for this agent"
    );
    assert_eq!(Code::from(resp[2].error_code), Code::InvalidArgument);
    assert!(resp[2].error_message.contains("does not match entry"));
    assert_eq!(Code::from(resp[3].error_code), Code::NotFound);
    assert_eq!(Code::from(resp[4].error_code), Code::InvalidArgument);

    // Renewal records the new serial.
    let new_key = KeyPair::generate().unwrap();
    let renewed = client
        .renew_agent(RenewAgentRequest {
            csr: build_csr(&new_key, &agent.id).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .svid_chain;
    assert_eq!(
        validate_x509_svid(&renewed, &f.bundle, SystemClock.now()).unwrap(),
        agent.id
    );
    let record = f
        .admin
        .get_agent(AgentRequest {
            spiffe_id: agent.id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(record.serial, cert_info(&renewed[0]).unwrap().serial_hex);

    // A ban ends the stream and refuses further calls.
    f.admin
        .ban_agent(AgentRequest {
            spiffe_id: agent.id.to_string(),
        })
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(2), sync.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(end.code(), Code::PermissionDenied);
    let err = client
        .sync(SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("banned"), "{}", err.message());

    // Without a client certificate only Attest is allowed.
    let mut anon = node_client(f.server.node_addr, &f.bundle, None)
        .await
        .unwrap();
    let err = anon
        .sync(SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let socket = f.server.admin_socket.clone();
    f.server.stop().await;
    assert!(!socket.exists(), "admin socket removed on stop");
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let mut f = fixture(FileConfig::default()).await;
    let mut stranger = fixture(FileConfig::default()).await;
    let foreign = new_agent(&mut stranger).await;
    let own = new_agent(&mut f).await;
    // A chain to another CA is refused in the handshake as unknown_ca...
    assert_eq!(
        tls_alert(
            f.server.node_addr,
            &f.bundle,
            (&foreign.chain, &foreign.key)
        )
        .await,
        Some(rustls::AlertDescription::UnknownCA)
    );
    // ...while this server's own agent is taken and served.
    assert_eq!(
        tls_alert(f.server.node_addr, &f.bundle, (&own.chain, &own.key)).await,
        None
    );
    let mut client = node_client(f.server.node_addr, &f.bundle, Some((&own.chain, &own.key)))
        .await
        .unwrap();
    let mut sync = client
        .sync(SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(sync.message().await.unwrap().is_some());
    stranger.server.stop().await;
    f.server.stop().await;
}

/// The JWT keys of a GetBundle answer, as the validator takes them.
fn jwt_bundles(b: &admin::GetBundleResponse) -> signet_core::jwt::JwtBundles {
    let keys = b
        .jwt_authorities
        .iter()
        .map(|a| {
            let jwk: signet_core::jwt::Jwk = serde_json::from_str(&a.jwk).unwrap();
            assert_eq!(jwk.use_.as_deref(), Some("jwt-svid"));
            assert_eq!(jwk.kid.as_deref(), Some(a.kid.as_str()));
            (
                a.kid.clone(),
                signet_core::jwt::JwtPublicKey::from_jwk(&jwk).unwrap(),
            )
        })
        .collect();
    let td = signet_core::TrustDomain::new(&b.trust_domain).unwrap();
    [(td, keys)].into_iter().collect()
}

#[tokio::test]
async fn mint_jwt_svid_for_authorized_entries_only() {
    use signet_core::jwt::{parse_unverified, validate_jwt_svid, ValidationOptions};
    use signet_proto::node::MintJwtSvidRequest;

    let mut f = fixture(FileConfig::default()).await;
    let agent = new_agent(&mut f).await;
    let other = new_agent(&mut f).await;
    let mine = create_entry(&mut f, "spiffe://example.org/web", &agent.id).await;
    let theirs = create_entry(&mut f, "spiffe://example.org/db", &other.id).await;
    let bundle = f
        .admin
        .get_bundle(admin::GetBundleRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bundle.jwt_authorities.len(), 1);
    assert_eq!(bundle.jwt_authorities[0].kid.len(), 32);
    assert_eq!(bundle.refresh_hint, 300);
    let mut client = node_client(
        f.server.node_addr,
        &f.bundle,
        Some((&agent.chain, &agent.key)),
    )
    .await
    .unwrap();

    let before = signet_core::clock::unix_seconds(SystemClock.now());
    let resp = client
        .mint_jwt_svid(MintJwtSvidRequest {
            entry_id: mine.id.clone(),
            audience: vec!["db".into(), "cache".into()],
        })
        .await
        .unwrap()
        .into_inner();
    // Default JWT-SVID TTL: 5 minutes.
    assert_eq!(resp.expires_at - resp.issued_at, 300);
    assert!(resp.issued_at >= before);
    let opts = ValidationOptions {
        now: SystemClock.now(),
        leeway: Duration::from_secs(5),
    };
    let v = validate_jwt_svid(&resp.token, "cache", &jwt_bundles(&bundle), opts).unwrap();
    assert_eq!(v.spiffe_id.to_string(), "spiffe://example.org/web");
    assert_eq!(v.kid, bundle.jwt_authorities[0].kid);
    let (header, claims) = parse_unverified(&resp.token).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], bundle.jwt_authorities[0].kid.as_str());
    assert_eq!(claims["sub"], "spiffe://example.org/web");
    assert_eq!(claims["aud"], serde_json::json!(["db", "cache"]));
    assert_eq!(claims["iat"], resp.issued_at);
    assert_eq!(claims["exp"], resp.expires_at);
    let jti = claims["jti"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&jti).is_ok(), "{jti}");
    let again = client
        .mint_jwt_svid(MintJwtSvidRequest {
            entry_id: mine.id.clone(),
            audience: vec!["db".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let (_, claims2) = parse_unverified(&again.token).unwrap();
    assert_ne!(claims2["jti"].as_str().unwrap(), jti, "jti is unique");

    // Another agent's entry.
    let err = client
        .mint_jwt_svid(MintJwtSvidRequest {
            entry_id: theirs.id.clone(),
            audience: vec!["db".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "entry is not authorized for this agent");

    // Unknown entry; empty audience; an empty string in the audience.
    let err = client
        .mint_jwt_svid(MintJwtSvidRequest {
            entry_id: "nope".into(),
            audience: vec!["db".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    for audience in [vec![], vec!["db".to_owned(), String::new()]] {
        let err = client
            .mint_jwt_svid(MintJwtSvidRequest {
                entry_id: mine.id.clone(),
                audience,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("audience"), "{}", err.message());
    }

    // An entry's own JWT-SVID TTL wins over the default.
    let short = f
        .admin
        .create_entry(admin::Entry {
            spiffe_id: "spiffe://example.org/short".into(),
            parent_id: agent.id.to_string(),
            selectors: vec!["unix:uid:1001".into()],
            jwt_svid_ttl: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let resp = client
        .mint_jwt_svid(MintJwtSvidRequest {
            entry_id: short.id,
            audience: vec!["db".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.expires_at - resp.issued_at, 60);

    // Without a client certificate: Unauthenticated.
    let mut anon = node_client(f.server.node_addr, &f.bundle, None)
        .await
        .unwrap();
    let err = anon
        .mint_jwt_svid(MintJwtSvidRequest {
            entry_id: mine.id.clone(),
            audience: vec!["db".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A banned agent may not mint.
    f.admin
        .ban_agent(AgentRequest {
            spiffe_id: agent.id.to_string(),
        })
        .await
        .unwrap();
    let err = client
        .mint_jwt_svid(MintJwtSvidRequest {
            entry_id: mine.id,
            audience: vec!["db".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    f.server.stop().await;
}

#[tokio::test]
async fn bundle_sequence_and_jwt_key_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        RuntimeConfig::try_from(FileConfig {
            data_dir: Some(dir.path().join("data")),
            admin_socket: Some(dir.path().join("admin.sock")),
            bind: Some("127.0.0.1:0".into()),
            ..FileConfig::default()
        })
        .unwrap()
    };
    let get = |server: &RunningServer| {
        let socket = server.admin_socket.clone();
        async move {
            let mut admin = signet_server::cli::client::connect(&socket).await.unwrap();
            admin
                .get_bundle(admin::GetBundleRequest {})
                .await
                .unwrap()
                .into_inner()
        }
    };
    let server = start(config(), Arc::new(SystemClock)).await.unwrap();
    let first = get(&server).await;
    assert!(first.sequence >= 1);
    server.stop().await;
    // The JWT keys: one file each, 0600, nowhere else.
    use std::os::unix::fs::PermissionsExt;
    let keys: Vec<_> = std::fs::read_dir(dir.path().join("data/ca/jwt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), first.jwt_authorities.len());
    for key in &keys {
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let server = start(config(), Arc::new(SystemClock)).await.unwrap();
    let second = get(&server).await;
    assert_eq!(second.sequence, first.sequence);
    assert_eq!(second.jwt_authorities, first.jwt_authorities);
    server.stop().await;

    // A new (prepared) JWT key changes the bundle: the sequence increases,
    // and it survives a restart.
    let server = start(config(), Arc::new(SystemClock)).await.unwrap();
    let mut admin = signet_server::cli::client::connect(&server.admin_socket)
        .await
        .unwrap();
    let prepared = admin
        .prepare_authority(admin::AuthorityKindRequest {
            kind: admin::AuthorityKind::Jwt as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(prepared.state, "prepared");
    let third = get(&server).await;
    assert!(third.sequence > second.sequence);
    assert_eq!(third.jwt_authorities.len(), 2);
    assert!(third.jwt_authorities.iter().any(|a| a.kid == prepared.id));
    server.stop().await;
    let server = start(config(), Arc::new(SystemClock)).await.unwrap();
    assert_eq!(get(&server).await, third);
    server.stop().await;
}

#[tokio::test]
async fn a_burst_of_entries_arrives_in_a_few_messages_and_a_ban_behind_it_at_once() {
    let mut f = fixture(FileConfig::default()).await;
    let agent = new_agent(&mut f).await;
    let mut client = node_client(
        f.server.node_addr,
        &f.bundle,
        Some((&agent.chain, &agent.key)),
    )
    .await
    .unwrap();
    let mut sync = client
        .sync(SyncRequest {
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let snap = sync.message().await.unwrap().unwrap();
    assert!(snap.snapshot && snap.entries.is_empty());

    // 5,000 entries in five batches, then the ban: all committed before
    // the stream has sent any of it.
    let n = 5_000;
    for batch in 0..5 {
        let entries = (0..n / 5)
            .map(|i| admin::Entry {
                spiffe_id: format!("spiffe://example.org/burst/{batch}/{i}"),
                parent_id: agent.id.to_string(),
                selectors: vec!["unix:uid:1000".into()],
                ..Default::default()
            })
            .collect();
        let created = f
            .admin
            .batch_create_entry(admin::BatchCreateEntryRequest { entries })
            .await
            .unwrap()
            .into_inner();
        assert!(created.results.iter().all(|r| r.error_code == 0));
    }
    f.admin
        .ban_agent(AgentRequest {
            spiffe_id: agent.id.to_string(),
        })
        .await
        .unwrap();

    let (mut messages, mut entries, mut revision) = (0, 0, snap.revision);
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), sync.message())
            .await
            .expect("the stream goes on")
        {
            Ok(Some(m)) => {
                assert!(!m.snapshot, "no resnapshot: the burst fits the channel");
                assert!(m.revision > revision);
                revision = m.revision;
                messages += 1;
                entries += m.entries.len();
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    assert!(ended.message().contains("banned"), "{}", ended.message());
    assert_eq!(entries, n, "every entry, once");
    // Batched as they were waiting: far fewer messages than entries.
    assert!(messages <= 50, "{messages} messages for {n} entries");
}
