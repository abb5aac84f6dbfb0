//! Envoy SDS v3 on the real agent's socket, called as Envoy calls it: a
//! client built on Envoy's own protos (`envoy-types`) streams secrets, a
//! rustls server and client configured only from what it received complete
//! an mTLS handshake, a CA rotation arrives as new versions on the open
//! stream, a NACK leaves it open, and envoy-data-plane (Python, an
//! independent implementation of the same protos) decodes the very bytes
//! the agent sent to the same certificates and keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{
    data_source::Specifier, node::UserAgentVersionType, BuildVersion, DataSource, Node,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, Secret, SpiffeCertValidatorConfig,
};
use envoy_types::pb::envoy::r#type::v3::SemanticVersion;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;
use signet_core::pem::{decode_certs, decode_private_key, encode_certs};
use signet_tests::checks::assert_svid_leaf_profile;
use signet_tests::{my_uid_selector, start_pair, wait};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
const PATIENCE: Duration = Duration::from_secs(20);

async fn sds_client(socket: &Path) -> SecretDiscoveryServiceClient<Channel> {
    let channel = signet_proto::uds::channel(socket).await.unwrap();
    SecretDiscoveryServiceClient::new(channel)
}

/// What Envoy 1.30 sends first.
fn envoy_request(names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: "sidecar-1".into(),
            cluster: "front".into(),
            user_agent_name: "envoy".into(),
            user_agent_version_type: Some(UserAgentVersionType::UserAgentBuildVersion(
                BuildVersion {
                    version: Some(SemanticVersion {
                        major_number: 1,
                        minor_number: 30,
                        patch: 1,
                    }),
                    metadata: None,
                },
            )),
            ..Node::default()
        }),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        type_url: SECRET.into(),
        ..DiscoveryRequest::default()
    }
}

fn secrets(response: &DiscoveryResponse) -> Vec<Secret> {
    assert_eq!(response.type_url, SECRET);
    response
        .resources
        .iter()
        .map(|a| {
            assert_eq!(a.type_url, SECRET);
            Secret::decode(a.value.as_slice()).unwrap()
        })
        .collect()
}

fn find<'a>(secrets: &'a [Secret], name: &str) -> &'a Secret {
    secrets
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no secret {name:?}"))
}

fn bytes(source: Option<&DataSource>) -> Vec<u8> {
    match source.and_then(|s| s.specifier.as_ref()) {
        Some(Specifier::InlineBytes(b)) => b.clone(),
        other => panic!("not inline bytes: {other:?}"),
    }
}

/// A tls_certificate's chain (DER) and PKCS#8 key.
fn identity(s: &Secret) -> (Vec<Vec<u8>>, Vec<u8>) {
    let Some(secret::Type::TlsCertificate(t)) = &s.r#type else {
        panic!("{} is not a tls_certificate", s.name)
    };
    (
        decode_certs(&bytes(t.certificate_chain.as_ref())).unwrap(),
        decode_private_key(&bytes(t.private_key.as_ref())).unwrap(),
    )
}

/// A validation context's CAs per trust domain, from the SPIFFE validator
/// config (or `trusted_ca`, under the name "").
fn trusted(s: &Secret) -> Vec<(String, Vec<Vec<u8>>)> {
    let Some(secret::Type::ValidationContext(v)) = &s.r#type else {
        panic!("{} is not a validation_context", s.name)
    };
    match &v.custom_validator_config {
        Some(c) => {
            assert_eq!(c.name, "envoy.tls.cert_validator.spiffe");
            let config = SpiffeCertValidatorConfig::decode(
                c.typed_config.as_ref().unwrap().value.as_slice(),
            )
            .unwrap();
            config
                .trust_domains
                .iter()
                .map(|td| {
                    (
                        td.name.clone(),
                        decode_certs(&bytes(td.trust_bundle.as_ref())).unwrap(),
                    )
                })
                .collect()
        }
        None => vec![(
            String::new(),
            decode_certs(&bytes(v.trusted_ca.as_ref())).unwrap(),
        )],
    }
}

fn roots(cas: &[Vec<u8>]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(CertificateDer::from(ca.clone())).unwrap();
    }
    roots
}

fn certified(
    chain: &[Vec<u8>],
    key: &[u8],
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        chain
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
    )
}

/// An mTLS handshake between a rustls server holding `server` and a client
/// holding `client`, both trusting only `cas`: the SPIFFE IDs each side saw.
async fn handshake(
    server: &(Vec<Vec<u8>>, Vec<u8>),
    client: &(Vec<Vec<u8>>, Vec<u8>),
    cas: &[Vec<u8>],
) -> (String, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(cas)),
        provider.clone(),
    )
    .build()
    .unwrap();
    let (chain, key) = certified(&server.0, &server.1);
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let (chain, key) = certified(&client.0, &client.1);
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(cas))
        .with_client_auth_cert(chain, key)
        .unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let name = ServerName::try_from("localhost").unwrap();
    let (accepted, connected) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
    let (accepted, connected) = (accepted.unwrap(), connected.unwrap());
    let seen_by_server = accepted.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let seen_by_client = connected.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    (
        assert_svid_leaf_profile(&seen_by_server),
        assert_svid_leaf_profile(&seen_by_client),
    )
}

/// envoy-data-plane's reading of the responses saved in `files`.
fn python_decode(files: &[&Path]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/decode_sds.py");
    let out = Command::new("python3")
        .arg(script)
        .args(files)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "envoy-data-plane failed (scripts/test installs it: pip install envoy-data-plane==2.2.0): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Stream {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: tonic::Streaming<DiscoveryResponse>,
}

impl Stream {
    async fn next(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(PATIENCE, self.rx.message())
            .await
            .expect("a response in time")
            .unwrap()
            .expect("the stream is open")
    }

    async fn silent_for(&mut self, d: Duration) {
        let got = tokio::time::timeout(d, self.rx.message()).await;
        assert!(got.is_err(), "expected no response, got {got:?}");
    }

    async fn reply(
        &self,
        names: &[&str],
        version: &str,
        to: &DiscoveryResponse,
        nack: Option<&str>,
    ) {
        let mut request = envoy_request(names);
        request.node = None;
        request.version_info = version.into();
        request.response_nonce = to.nonce.clone();
        request.error_detail = nack.map(|m| RpcStatus {
            code: 13,
            message: m.into(),
            details: vec![],
        });
        self.tx.send(request).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_secrets_make_an_mtls_handshake_and_each_rotation_is_a_new_version() {
    let (server, agent) = start_pair(&[]).await;
    let front = server.id("/front");
    let back = server.id("/back");
    let me = my_uid_selector();
    server.create_entry(&front, &agent.spiffe_id, &[&me], &["--dns", "localhost"]);
    server.create_entry(&back, &agent.spiffe_id, &[&me], &[]);
    let mut client = sds_client(&agent.socket_path).await;
    let names = [front.as_str(), back.as_str(), "ROOTCA", "ALL"];
    // Both SVIDs issued (FetchSecrets waits a moment for ones in progress).
    wait::until("both SVIDs over SDS", PATIENCE, || {
        let mut client = client.clone();
        async move { client.fetch_secrets(envoy_request(&names)).await.ok() }
    })
    .await;

    let (tx, requests) = mpsc::channel(8);
    tx.send(envoy_request(&names)).await.unwrap();
    let rx = client
        .stream_secrets(ReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();
    let mut stream = Stream { tx, rx };
    let v1 = stream.next().await;
    let got = secrets(&v1);
    assert_eq!(got.len(), 4);
    let (front_id, back_id) = (identity(find(&got, &front)), identity(find(&got, &back)));
    let own = trusted(find(&got, "ROOTCA"));
    assert_eq!(own.len(), 1);
    assert_eq!(
        own[0].0, "example.org",
        "Envoy 1.30 gets the SPIFFE validator"
    );
    assert_eq!(trusted(find(&got, "ALL")), own);
    let cas = own[0].1.clone();
    assert_eq!(cas.len(), 1);

    // Configured from SDS alone, a server and a client authenticate each other.
    let (client_seen, server_seen) = handshake(&front_id, &back_id, &cas).await;
    assert_eq!(
        (client_seen.as_str(), server_seen.as_str()),
        (back.as_str(), front.as_str())
    );

    // ACK: nothing more until something changes.
    stream.reply(&names, &v1.version_info, &v1, None).await;
    stream.silent_for(Duration::from_millis(500)).await;

    // A prepared CA reaches the bundle: a new version with both CAs.
    let old_ca = server.authority_in_state("x509", "active").unwrap();
    server.cli_ok(&["authority", "x509", "prepare"]);
    let v2 = stream.next().await;
    assert_ne!(v2.version_info, v1.version_info);
    assert_ne!(v2.nonce, v1.nonce);
    let got2 = secrets(&v2);
    assert_eq!(trusted(find(&got2, "ROOTCA"))[0].1.len(), 2);
    assert_eq!(
        identity(find(&got2, &front)),
        front_id,
        "the SVID is unchanged"
    );

    // Envoy rejects it (NACK, keeping v1): the stream stays open.
    stream
        .reply(
            &names,
            &v1.version_info,
            &v2,
            Some("test: refused on purpose"),
        )
        .await;
    stream.silent_for(Duration::from_millis(500)).await;

    // The new CA active and the old one tainted: the SVIDs are re-issued
    // at once and pushed as the next version.
    server.cli_ok(&["authority", "x509", "activate"]);
    server.cli_ok(&["authority", "x509", "taint", "--id", &old_ca]);
    let (v3, got3) = loop {
        let v = stream.next().await;
        let got = secrets(&v);
        let rotated = identity(find(&got, &front)).0 != front_id.0
            && identity(find(&got, &back)).0 != back_id.0;
        stream.reply(&names, &v.version_info, &v, None).await;
        if rotated {
            break (v, got);
        }
    };
    let (front2, back2) = (identity(find(&got3, &front)), identity(find(&got3, &back)));
    let cas3: Vec<Vec<u8>> = trusted(find(&got3, "ROOTCA"))[0].1.clone();
    let (client_seen, server_seen) = handshake(&front2, &back2, &cas3).await;
    assert_eq!(
        (client_seen.as_str(), server_seen.as_str()),
        (back.as_str(), front.as_str())
    );

    // The same bytes, read by envoy-data-plane.
    let dir = tempfile::tempdir().unwrap();
    let (f1, f3) = (dir.path().join("v1.pb"), dir.path().join("v3.pb"));
    std::fs::write(&f1, v1.encode_to_vec()).unwrap();
    std::fs::write(&f3, v3.encode_to_vec()).unwrap();
    let py = python_decode(&[&f1, &f3]);
    for (response, decoded, ids) in [
        (&v1, &py[0], (&front_id, &back_id, &cas)),
        (&v3, &py[1], (&front2, &back2, &cas3)),
    ] {
        assert_eq!(decoded["version_info"], response.version_info.as_str());
        assert_eq!(decoded["nonce"], response.nonce.as_str());
        assert_eq!(decoded["type_url"], SECRET);
        let by_name = |n: &str| {
            decoded["secrets"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == n)
                .unwrap_or_else(|| panic!("{n} not decoded: {decoded}"))
                .clone()
        };
        for (name, (chain, _)) in [(&front, ids.0), (&back, ids.1)] {
            let s = by_name(name);
            assert_eq!(s["kind"], "tls_certificate");
            assert_eq!(
                s["chain_pem"],
                encode_certs(chain.iter().map(Vec::as_slice))
            );
            assert_eq!(s["key_is_pkcs8"], true);
        }
        for name in ["ROOTCA", "ALL"] {
            let s = by_name(name);
            assert_eq!(s["kind"], "validation_context");
            assert_eq!(s["validator"], "envoy.tls.cert_validator.spiffe");
            assert_eq!(
                s["trust_domains"]["example.org"],
                encode_certs(ids.2.iter().map(Vec::as_slice))
            );
        }
    }
}

#[tokio::test]
async fn an_envoy_without_an_identity_or_asking_for_another_is_refused_precisely() {
    let (server, agent) = start_pair(&[]).await;
    let mut client = sds_client(&agent.socket_path).await;
    // No entry for this uid: what FetchX509SVID says.
    let err = client
        .fetch_secrets(envoy_request(&["default"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");

    let mine = server.id("/mine");
    server.create_entry(&mine, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    let someone_elses = server.id("/someone-else");
    server.create_entry(&someone_elses, &agent.spiffe_id, &["unix:uid:4242"], &[]);
    wait::until("my SVID over SDS", PATIENCE, || {
        let mut client = client.clone();
        async move { client.fetch_secrets(envoy_request(&["default"])).await.ok() }
    })
    .await;
    let err = client
        .fetch_secrets(envoy_request(&["default", &someone_elses]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        err.message(),
        format!("workload is not authorized for the requested identities [\"{someone_elses}\"]")
    );
}
