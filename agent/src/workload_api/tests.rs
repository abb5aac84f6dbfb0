//! The Workload API on a real Unix socket, fed by hand-built cache snapshots
//! and called with a tonic client, as SPIFFE clients would.

use signet_core::Clock;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::CertificateDer;
use signet_core::jwt::{JwtBundles, JwtSigner};
use signet_core::{RegistrationEntry, SpiffeId, SystemClock, TrustDomain};
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_proto::workload::X509svidResponse;
use tonic::transport::Channel;
use tonic::Code;

use super::*;
use crate::attest::workload::unix::UnixAttestor;
use crate::cache::{CachedEntry, Svid};
use crate::config::WorkloadApiLimits;
use crate::test_support::FakeMinter;
use tokio::net::UnixStream;

struct TestCa {
    cert: Vec<u8>,
    key: KeyPair,
    /// The trust domain's JWT signing key, kid "k1".
    jwt: Arc<JwtSigner>,
    /// The same key as PKCS#8, to sign hand-forged tokens.
    jwt_pkcs8: Vec<u8>,
}

impl TestCa {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let now = SystemClock.now();
        let cert = signet_core::x509::ca_params(
            &td(),
            now - Duration::from_secs(60),
            now + Duration::from_secs(3600),
        )
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec();
        let (jwt, jwt_pkcs8) = JwtSigner::generate("k1".into()).unwrap();
        Self {
            cert,
            key,
            jwt: Arc::new(jwt),
            jwt_pkcs8,
        }
    }

    fn issue(&self, path: &str, ttl: Duration) -> Arc<Svid> {
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(self.cert.as_slice()), &self.key)
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let now = SystemClock.now();
        let id = SpiffeId::parse(&format!("spiffe://example.org{path}")).unwrap();
        let params =
            signet_core::x509::leaf_params(&id, &[], now - Duration::from_secs(30), now + ttl)
                .unwrap();
        let leaf = signet_core::x509::sign_leaf(&params, &key, &issuer).unwrap();
        let info = signet_core::x509::cert_info(&leaf).unwrap();
        Arc::new(Svid {
            x509: signet_core::X509Svid {
                spiffe_id: id,
                chain: vec![leaf],
                not_after: info.not_after,
                authority_id: crate::cache::authority_id(&self.cert).into(),
                serial_hex: info.serial_hex,
            },
            key_pkcs8: zeroize::Zeroizing::new(key.serialize_der()),
        })
    }
}

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn my_uid_selector() -> String {
    format!("unix:uid:{}", nix::unistd::getuid().as_raw())
}

fn entry(id: &str, path: &str, selector: &str, hint: &str) -> RegistrationEntry {
    RegistrationEntry {
        id: id.into(),
        spiffe_id: SpiffeId::parse(&format!("spiffe://example.org{path}")).unwrap(),
        parent_id: SpiffeId::parse("spiffe://example.org/signet/agent/x").unwrap(),
        selectors: vec![selector.parse().unwrap()],
        x509_svid_ttl: None,
        jwt_svid_ttl: None,
        dns_names: vec![],
        hint: hint.into(),
        admin: false,
        downstream: false,
        revision: 1,
        federates_with: vec![],
    }
}

fn snapshot(ca: &TestCa, entries: Vec<(RegistrationEntry, Option<Arc<Svid>>)>) -> Arc<Snapshot> {
    let entries: BTreeMap<crate::cache::state::EntryId, CachedEntry> = entries
        .into_iter()
        .map(|(entry, svid)| {
            (
                entry.id.as_str().into(),
                CachedEntry {
                    entry: entry.into(),
                    svid,
                },
            )
        })
        .collect();
    let mut jwt_bundles = JwtBundles::new();
    jwt_bundles.insert(td(), [("k1".to_string(), ca.jwt.public_key())].into());
    Arc::new(Snapshot {
        trust_domain: td(),
        bundle: Some(Arc::new(vec![ca.cert.clone()])),
        jwt_bundles: Arc::new(jwt_bundles),
        federated_bundles: Arc::default(),
        policies: Arc::default(),
        entries,
        crls: Arc::default(),
        revocations: Arc::default(),
        tainted: Arc::default(),
        revision: 1,
    })
}

/// The Workload API on a socket of its own, and a client connected to it.
struct Served {
    _dir: tempfile::TempDir,
    client: SpiffeWorkloadApiClient<Channel>,
    minter: Arc<FakeMinter>,
    metrics: Arc<Metrics>,
    drain: watch::Sender<bool>,
    socket: PathBuf,
}

/// A Workload API serving the snapshots a test publishes by hand.
struct Agent {
    cache: watch::Sender<Arc<Snapshot>>,
    served: Served,
}

impl std::ops::Deref for Agent {
    type Target = Served;

    fn deref(&self) -> &Served {
        &self.served
    }
}

async fn start(initial: Arc<Snapshot>) -> Agent {
    let (signer, _) = JwtSigner::generate("k1".into()).unwrap();
    let minter = FakeMinter::new(
        Arc::new(signer),
        Arc::new(SystemClock),
        Duration::from_secs(300),
    );
    start_with(initial, minter).await
}

/// An agent whose JWT-SVIDs come from `minter`.
async fn start_with(initial: Arc<Snapshot>, minter: FakeMinter) -> Agent {
    start_with_settings(initial, minter, ServeSettings::default()).await
}

async fn start_with_settings(
    initial: Arc<Snapshot>,
    minter: FakeMinter,
    settings: ServeSettings,
) -> Agent {
    let (cache, rx) = watch::channel(initial);
    let served = serve_cache(rx, minter, settings).await;
    Agent { cache, served }
}

/// Serves the snapshots `rx` receives, wherever they come from.
async fn serve_cache(
    rx: watch::Receiver<Arc<Snapshot>>,
    minter: FakeMinter,
    settings: ServeSettings,
) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("public/api.sock");
    let attestor = Arc::new(UnixAttestor::new("/proc", 1024));
    let minter = Arc::new(minter);
    let jwt_svids = Arc::new(JwtSvidCache::new(minter.clone(), Arc::new(SystemClock)));
    let api = WorkloadApi::new(
        rx,
        attestor,
        Arc::new(SystemClock),
        jwt_svids,
        Duration::from_secs(30),
    );
    let metrics = Arc::new(Metrics::new());
    let (drain, drain_rx) = watch::channel(false);
    let api = api.with_telemetry(metrics.clone(), drain_rx);
    let listener = bind(&socket).unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o777, "socket is world-connectable");
    tokio::spawn(serve(listener, api, settings, std::future::pending()));
    let client = crate::cli::client::connect(&socket).await.unwrap();
    Served {
        socket,
        _dir: dir,
        client,
        minter,
        metrics,
        drain,
    }
}

async fn fetch(agent: &Served) -> Result<tonic::Streaming<X509svidResponse>, Status> {
    let mut client = agent.client.clone();
    client
        .fetch_x509svid(crate::cli::client::request(X509svidRequest {}))
        .await
        .map(|r| r.into_inner())
}

async fn next<T>(stream: &mut tonic::Streaming<T>) -> Result<Option<T>, Status> {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a message within 5 s")
}

async fn nothing_within<T: std::fmt::Debug>(stream: &mut tonic::Streaming<T>, ms: u64) {
    let got = tokio::time::timeout(Duration::from_millis(ms), stream.message()).await;
    assert!(got.is_err(), "expected silence, got {got:?}");
}

#[tokio::test]
async fn missing_security_header_is_invalid_argument() {
    let ca = TestCa::new();
    let agent = start(snapshot(&ca, vec![])).await;
    let mut client = agent.client.clone();
    let err = client
        .fetch_x509svid(Request::new(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "security header missing from request");
    let err = client
        .fetch_x509_bundles(Request::new(X509BundlesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn agent_not_ready_is_unavailable() {
    let agent = start(Arc::new(Snapshot::empty(td()))).await;
    assert_eq!(fetch(&agent).await.unwrap_err().code(), Code::Unavailable);
}

#[tokio::test]
async fn caller_without_entry_gets_no_identity_issued() {
    let ca = TestCa::new();
    let other = entry("e1", "/other", "unix:uid:4294967294", "");
    let agent = start(snapshot(
        &ca,
        vec![(other, Some(ca.issue("/other", Duration::from_secs(600))))],
    ))
    .await;
    let err = fetch(&agent).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");
    let mut client = agent.client.clone();
    let err = client
        .fetch_x509_bundles(crate::cli::client::request(X509BundlesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");
}

#[tokio::test]
async fn workload_gets_its_svid_and_every_rotation_then_loses_it_on_delete() {
    let ca = TestCa::new();
    let me = entry("e1", "/me", &my_uid_selector(), "");
    let first = ca.issue("/me", Duration::from_secs(600));
    let agent = start(snapshot(&ca, vec![(me.clone(), Some(first.clone()))])).await;

    let mut stream = fetch(&agent).await.unwrap();
    let msg = next(&mut stream).await.unwrap().unwrap();
    assert_eq!(msg.svids.len(), 1);
    let svid = &msg.svids[0];
    assert_eq!(svid.spiffe_id, "spiffe://example.org/me");
    assert_eq!(svid.x509_svid, first.x509.chain.concat());
    assert_eq!(svid.x509_svid_key, *first.key_pkcs8);
    assert_eq!(svid.bundle, ca.cert);

    // The same state again is not re-sent.
    agent
        .cache
        .send_replace(snapshot(&ca, vec![(me.clone(), Some(first.clone()))]));
    nothing_within(&mut stream, 200).await;

    // A rotation is.
    let second = ca.issue("/me", Duration::from_secs(600));
    agent
        .cache
        .send_replace(snapshot(&ca, vec![(me.clone(), Some(second.clone()))]));
    let msg = next(&mut stream).await.unwrap().unwrap();
    assert_eq!(msg.svids[0].x509_svid_key, *second.key_pkcs8);

    // Entry deleted: the stream ends with "no identity issued".
    agent.cache.send_replace(snapshot(&ca, vec![]));
    let err = next(&mut stream).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");
}

#[tokio::test]
async fn stream_waits_for_an_svid_still_being_issued() {
    let ca = TestCa::new();
    let me = entry("e1", "/me", &my_uid_selector(), "");
    let agent = start(snapshot(&ca, vec![(me.clone(), None)])).await;
    let mut stream = fetch(&agent).await.unwrap();
    nothing_within(&mut stream, 200).await;
    agent.cache.send_replace(snapshot(
        &ca,
        vec![(me, Some(ca.issue("/me", Duration::from_secs(600))))],
    ));
    let msg = next(&mut stream).await.unwrap().unwrap();
    assert_eq!(msg.svids.len(), 1);
}

#[tokio::test]
async fn expired_svid_is_withdrawn_and_never_served() {
    let ca = TestCa::new();
    let me = entry("e1", "/me", &my_uid_selector(), "");
    let other = entry("e2", "/other", &my_uid_selector(), "");
    let short = ca.issue("/me", Duration::from_secs(2));
    let long = ca.issue("/other", Duration::from_secs(600));
    // Two SVIDs: when one expires unrenewed (server unreachable) the stream
    // gets the state without it.
    let agent = start(snapshot(
        &ca,
        vec![
            (me.clone(), Some(short.clone())),
            (other.clone(), Some(long)),
        ],
    ))
    .await;
    let mut stream = fetch(&agent).await.unwrap();
    assert_eq!(next(&mut stream).await.unwrap().unwrap().svids.len(), 2);
    let msg = next(&mut stream).await.unwrap().unwrap();
    assert_eq!(msg.svids.len(), 1, "the expired one is withdrawn");
    assert_eq!(msg.svids[0].spiffe_id, "spiffe://example.org/other");

    // With only the expired one, the stream ends with "no identity issued",
    // and so does a new caller, once the grace for issuing has passed.
    agent
        .cache
        .send_replace(snapshot(&ca, vec![(me.clone(), Some(short))]));
    let err = next(&mut stream).await.unwrap_err();
    assert_eq!(err.message(), "no identity issued");
    let mut fresh = fetch(&agent).await.unwrap();
    nothing_within(&mut fresh, 300).await;
    let err = next(&mut fresh).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");
}

#[tokio::test]
async fn svids_are_sorted_and_hints_unique() {
    let ca = TestCa::new();
    let sel = my_uid_selector();
    let agent = start(snapshot(
        &ca,
        vec![
            (
                entry("e3", "/zeta", &sel, "internal"),
                Some(ca.issue("/zeta", Duration::from_secs(600))),
            ),
            (
                entry("e1", "/alpha", &sel, "internal"),
                Some(ca.issue("/alpha", Duration::from_secs(600))),
            ),
            (
                entry("e2", "/beta", &sel, ""),
                Some(ca.issue("/beta", Duration::from_secs(600))),
            ),
        ],
    ))
    .await;
    let mut stream = fetch(&agent).await.unwrap();
    let msg = next(&mut stream).await.unwrap().unwrap();
    let ids: Vec<&str> = msg.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["spiffe://example.org/alpha", "spiffe://example.org/beta"]
    );
}

#[tokio::test]
async fn bundles_stream_carries_the_trust_domain_bundle_and_its_changes() {
    let ca = TestCa::new();
    let me = entry("e1", "/me", &my_uid_selector(), "");
    let agent = start(snapshot(&ca, vec![(me.clone(), None)])).await;
    let mut client = agent.client.clone();
    let mut stream = client
        .fetch_x509_bundles(crate::cli::client::request(X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    assert_eq!(msg.bundles.get("spiffe://example.org"), Some(&ca.cert));

    let other = TestCa::new();
    let mut snap = (*snapshot(&ca, vec![(me, None)])).clone();
    snap.bundle = Some(Arc::new(vec![ca.cert.clone(), other.cert.clone()]));
    agent.cache.send_replace(Arc::new(snap));
    let msg = stream.message().await.unwrap().unwrap();
    assert_eq!(
        msg.bundles.get("spiffe://example.org"),
        Some(&[ca.cert.clone(), other.cert.clone()].concat())
    );
}

#[tokio::test]
async fn stale_socket_is_replaced_on_bind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    drop(bind(&path).unwrap());
    assert!(path.exists());
    bind(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"not a socket").unwrap();
    assert!(bind(&path).is_err(), "a regular file is not removed");
}

mod federation;

mod federation_sync;

mod jwt_api;

mod revocation_api;

mod sds;

mod restart;

#[tokio::test]
async fn shutdown_ends_open_streams_with_unavailable_and_counts_them() {
    let ca = TestCa::new();
    let me = entry("e1", "/me", &my_uid_selector(), "");
    let svid = ca.issue("/me", Duration::from_secs(600));
    let agent = start(snapshot(&ca, vec![(me, Some(svid))])).await;
    let mut stream = fetch(&agent).await.unwrap();
    assert_eq!(next(&mut stream).await.unwrap().unwrap().svids.len(), 1);
    assert_eq!(agent.metrics.connected_workloads.get(), 1);
    let scraped = agent.metrics.encode();
    assert!(
        scraped.contains(
            "signet_agent_workload_api_duration_seconds_count{method=\"FetchX509SVID\"} 1\n"
        ),
        "{scraped}"
    );

    agent.drain.send_replace(true);
    let err = next(&mut stream).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), SHUTTING_DOWN);
    for _ in 0..100 {
        if agent.metrics.connected_workloads.get() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(agent.metrics.connected_workloads.get(), 0);
}

#[tokio::test]
async fn a_uid_over_its_connection_cap_is_told_why_and_others_keep_being_served() {
    use tokio::io::AsyncReadExt;
    let ca = TestCa::new();
    let svid = ca.issue("/w", Duration::from_secs(3600));
    let initial = snapshot(
        &ca,
        vec![(entry("e1", "/w", &my_uid_selector(), ""), Some(svid))],
    );
    let (signer, _) = JwtSigner::generate("k1".into()).unwrap();
    let minter = FakeMinter::new(
        Arc::new(signer),
        Arc::new(SystemClock),
        Duration::from_secs(300),
    );
    let settings = ServeSettings {
        limits: WorkloadApiLimits {
            max_connections_per_uid: 3,
            ..WorkloadApiLimits::default()
        },
        ..ServeSettings::default()
    };
    // The agent's own client holds one of the three.
    let agent = start_with_settings(initial, minter, settings).await;
    let _held: Vec<UnixStream> =
        futures::future::join_all((0..2).map(|_| UnixStream::connect(&agent.socket)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let mut refused = UnixStream::connect(&agent.socket).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), refused.read_to_end(&mut got))
        .await
        .expect("the refused connection is closed")
        .unwrap();
    // SETTINGS, then GOAWAY (type 7) with ENHANCE_YOUR_CALM (0xb).
    assert_eq!(&got[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    assert_eq!(got[12], 7, "{got:?}");
    assert_eq!(&got[22..26], &[0, 0, 0, 0xb]);
    let why = String::from_utf8_lossy(&got[26..]).to_string();
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(
        why,
        format!("uid {uid}: this peer already holds 3 connections, the most one peer may")
    );
    // The connection already open is still served.
    let mut stream = fetch(&agent).await.unwrap();
    assert!(next(&mut stream).await.unwrap().is_some());
    let text = agent.metrics.encode();
    assert!(
        text.contains(
            "signet_agent_workload_api_refused_connections_total{reason=\"uid_limit\"} 1"
        ),
        "{text}"
    );
}
