//! Envoy SDS on the Workload API socket, called with a client built on
//! Envoy's own protos: each resource name form, the state-of-the-world
//! protocol (ACK, NACK, stale nonce, new names) and pushes on rotation.

use envoy_types::pb::envoy::config::core::v3::{node::UserAgentVersionType, BuildVersion, Node};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, Secret, SpiffeCertValidatorConfig, TlsCertificate,
};
use envoy_types::pb::envoy::r#type::v3::SemanticVersion;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use signet_core::pem::{decode_certs, decode_private_key};
use tokio_stream::wrappers::ReceiverStream;

use super::*;
use crate::workload_api::sds::{secret_type_url, SPIFFE_VALIDATOR};

async fn sds(agent: &Served) -> SecretDiscoveryServiceClient<Channel> {
    SecretDiscoveryServiceClient::new(crate::cli::client::channel(&agent.socket).await.unwrap())
}

fn ask(names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        type_url: secret_type_url(),
        ..DiscoveryRequest::default()
    }
}

fn secrets(response: &DiscoveryResponse) -> Vec<Secret> {
    response
        .resources
        .iter()
        .map(|any| {
            assert_eq!(any.type_url, secret_type_url());
            Secret::decode(any.value.as_slice()).unwrap()
        })
        .collect()
}

fn tls(s: &Secret) -> &TlsCertificate {
    match &s.r#type {
        Some(secret::Type::TlsCertificate(t)) => t,
        other => panic!("{} is not a tls_certificate: {other:?}", s.name),
    }
}

fn context(s: &Secret) -> &CertificateValidationContext {
    match &s.r#type {
        Some(secret::Type::ValidationContext(v)) => v,
        other => panic!("{} is not a validation_context: {other:?}", s.name),
    }
}

fn inline(source: Option<&envoy_types::pb::envoy::config::core::v3::DataSource>) -> Vec<u8> {
    use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
    match source.and_then(|s| s.specifier.as_ref()) {
        Some(Specifier::InlineBytes(b)) => b.clone(),
        other => panic!("not inline bytes: {other:?}"),
    }
}

/// The trust domains and CA certificates of a SPIFFE validator context.
fn validator(v: &CertificateValidationContext) -> Vec<(String, Vec<Vec<u8>>)> {
    let config = v
        .custom_validator_config
        .as_ref()
        .expect("a custom validator");
    assert_eq!(config.name, SPIFFE_VALIDATOR);
    let any = config.typed_config.as_ref().unwrap();
    let decoded = SpiffeCertValidatorConfig::decode(any.value.as_slice()).unwrap();
    decoded
        .trust_domains
        .iter()
        .map(|td| {
            let pem = inline(td.trust_bundle.as_ref());
            (td.name.clone(), decode_certs(&pem).unwrap())
        })
        .collect()
}

fn envoy_node(major: u32, minor: u32) -> Node {
    Node {
        id: "sidecar".into(),
        user_agent_name: "envoy".into(),
        user_agent_version_type: Some(UserAgentVersionType::UserAgentBuildVersion(BuildVersion {
            version: Some(SemanticVersion {
                major_number: major,
                minor_number: minor,
                patch: 0,
            }),
            metadata: None,
        })),
        ..Node::default()
    }
}

#[tokio::test]
async fn every_resource_name_form_resolves_to_the_right_secret() {
    let ca = TestCa::new();
    let me = entry("e1", "/me", &my_uid_selector(), "");
    let other = entry("e2", "/other", &my_uid_selector(), "");
    let (me_svid, other_svid) = (
        ca.issue("/me", Duration::from_secs(600)),
        ca.issue("/other", Duration::from_secs(600)),
    );
    let agent = start(snapshot(
        &ca,
        vec![
            (me.clone(), Some(me_svid.clone())),
            (other, Some(other_svid.clone())),
        ],
    ))
    .await;
    let mut client = sds(&agent).await;
    let shared = client.clone();
    let fetch = |names: &'static [&'static str]| {
        let mut client = shared.clone();
        async move {
            client
                .fetch_secrets(ask(names))
                .await
                .map(|r| secrets(&r.into_inner()))
        }
    };

    // A SPIFFE ID: its chain and key, as PEM.
    let got = fetch(&["spiffe://example.org/other"]).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "spiffe://example.org/other");
    let cert = tls(&got[0]);
    assert_eq!(
        decode_certs(&inline(cert.certificate_chain.as_ref())).unwrap(),
        other_svid.x509.chain
    );
    assert_eq!(
        decode_private_key(&inline(cert.private_key.as_ref())).unwrap(),
        *other_svid.key_pkcs8
    );
    // `default`: the first identity, under that name.
    let got = fetch(&["default"]).await.unwrap();
    assert_eq!(got[0].name, "default");
    assert_eq!(
        decode_certs(&inline(tls(&got[0]).certificate_chain.as_ref())).unwrap(),
        me_svid.x509.chain
    );
    // A trust domain ID and ROOTCA: the CAs as trusted_ca (no Envoy version
    // announced, so no SPIFFE validator).
    for name in ["spiffe://example.org", "ROOTCA"] {
        let got = client
            .fetch_secrets(ask(&[name]))
            .await
            .map(|r| secrets(&r.into_inner()))
            .unwrap();
        assert_eq!(got[0].name, name);
        let v = context(&got[0]);
        assert_eq!(
            decode_certs(&inline(v.trusted_ca.as_ref())).unwrap(),
            vec![ca.cert.clone()]
        );
    }
    // An Envoy from 1.18 on gets the SPIFFE validator for one trust domain.
    let mut request = ask(&["spiffe://example.org"]);
    request.node = Some(envoy_node(1, 30));
    let got = secrets(&client.fetch_secrets(request).await.unwrap().into_inner());
    assert_eq!(
        validator(context(&got[0])),
        vec![("example.org".to_string(), vec![ca.cert.clone()])]
    );
    // ALL: the SPIFFE validator with every bundle.
    let got = fetch(&["ALL"]).await.unwrap();
    assert_eq!(got[0].name, "ALL");
    assert_eq!(
        validator(context(&got[0])),
        vec![("example.org".to_string(), vec![ca.cert.clone()])]
    );
    // No name: every bundle, then every identity.
    let got = fetch(&[]).await.unwrap();
    let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "spiffe://example.org",
            "spiffe://example.org/me",
            "spiffe://example.org/other"
        ]
    );
    // A name the caller has nothing for is refused, naming it.
    let err = fetch(&["default", "spiffe://example.org/nope"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        err.message(),
        "workload is not authorized for the requested identities [\"spiffe://example.org/nope\"]"
    );
    // Another resource type.
    let mut wrong = ask(&["default"]);
    wrong.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster".into();
    let err = client.fetch_secrets(wrong).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains(
        "serves only type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    ));
    // DeltaSecrets is not served.
    let err = client
        .delta_secrets(tokio_stream::iter(vec![DeltaDiscoveryRequest::default()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    // A caller with no entry gets what FetchX509SVID would say.
    agent.cache.send_replace(snapshot(&ca, vec![]));
    let err = fetch(&["ROOTCA"]).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "no identity issued");
}

/// A StreamSecrets stream and the sender of its requests.
struct Stream {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: tonic::Streaming<DiscoveryResponse>,
}

impl Stream {
    async fn open(agent: &Served, first: DiscoveryRequest) -> Stream {
        let (tx, requests) = mpsc::channel(8);
        tx.send(first).await.unwrap();
        let rx = sds(agent)
            .await
            .stream_secrets(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        Stream { tx, rx }
    }

    async fn next(&mut self) -> DiscoveryResponse {
        next(&mut self.rx).await.unwrap().expect("a response")
    }

    /// Answers `response` (an ACK, or a NACK with `error`).
    async fn reply(
        &self,
        names: &[&str],
        version: &str,
        response: &DiscoveryResponse,
        error: Option<&str>,
    ) {
        let mut request = ask(names);
        request.version_info = version.into();
        request.response_nonce = response.nonce.clone();
        request.error_detail = error.map(|e| RpcStatus {
            code: 3,
            message: e.into(),
            details: vec![],
        });
        self.tx.send(request).await.unwrap();
    }
}

#[tokio::test]
async fn a_stream_pushes_each_rotation_and_survives_a_nack() {
    let ca = TestCa::new();
    let me = entry("e1", "/me", &my_uid_selector(), "");
    let agent = start(snapshot(
        &ca,
        vec![(me.clone(), Some(ca.issue("/me", Duration::from_secs(600))))],
    ))
    .await;
    let names = ["default", "ROOTCA"];
    let mut stream = Stream::open(&agent, ask(&names)).await;
    let v1 = stream.next().await;
    assert_eq!(v1.type_url, secret_type_url());
    assert!(!v1.version_info.is_empty() && !v1.nonce.is_empty());
    assert_eq!(secrets(&v1).len(), 2);
    // ACK: nothing new to say.
    stream.reply(&names, &v1.version_info, &v1, None).await;
    nothing_within(&mut stream.rx, 200).await;

    // A rotation is pushed as a new version.
    let second = ca.issue("/me", Duration::from_secs(600));
    agent
        .cache
        .send_replace(snapshot(&ca, vec![(me.clone(), Some(second.clone()))]));
    let v2 = stream.next().await;
    assert_ne!(v2.version_info, v1.version_info);
    assert_ne!(v2.nonce, v1.nonce);
    let got = secrets(&v2);
    let cert = got.iter().find(|s| s.name == "default").unwrap();
    assert_eq!(
        decode_private_key(&inline(tls(cert).private_key.as_ref())).unwrap(),
        *second.key_pkcs8
    );

    // NACK (Envoy keeps v1): logged, the stream stays and goes on.
    stream
        .reply(&names, &v1.version_info, &v2, Some("bad key"))
        .await;
    nothing_within(&mut stream.rx, 200).await;
    let third = ca.issue("/me", Duration::from_secs(600));
    agent
        .cache
        .send_replace(snapshot(&ca, vec![(me.clone(), Some(third.clone()))]));
    let v3 = stream.next().await;
    assert_ne!(v3.version_info, v2.version_info);

    // A request answering an old nonce is stale: ignored.
    stream.reply(&["ALL"], &v1.version_info, &v1, None).await;
    nothing_within(&mut stream.rx, 200).await;
    // New names answering the last nonce: answered at once.
    stream.reply(&["ALL"], &v3.version_info, &v3, None).await;
    let v4 = stream.next().await;
    let got = secrets(&v4);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "ALL");

    // A bundle change reaches the validation context.
    let other_ca = TestCa::new();
    let mut next_snapshot = (*snapshot(&ca, vec![(me.clone(), Some(third))])).clone();
    next_snapshot.bundle = Some(Arc::new(vec![ca.cert.clone(), other_ca.cert.clone()]));
    agent.cache.send_replace(Arc::new(next_snapshot));
    let v5 = stream.next().await;
    assert_eq!(
        validator(context(&secrets(&v5)[0])),
        vec![(
            "example.org".to_string(),
            vec![ca.cert.clone(), other_ca.cert.clone()]
        )]
    );

    // The entry goes: the stream ends as FetchX509SVID's would.
    agent.cache.send_replace(snapshot(&ca, vec![]));
    let err = next(&mut stream.rx).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_stream_waits_for_an_svid_still_being_issued() {
    let ca = TestCa::new();
    let me = entry("e1", "/me", &my_uid_selector(), "");
    let agent = start(snapshot(&ca, vec![(me.clone(), None)])).await;
    let mut stream = Stream::open(&agent, ask(&["default"])).await;
    nothing_within(&mut stream.rx, 200).await;
    agent.cache.send_replace(snapshot(
        &ca,
        vec![(me, Some(ca.issue("/me", Duration::from_secs(600))))],
    ));
    let v1 = stream.next().await;
    assert_eq!(secrets(&v1)[0].name, "default");
}
