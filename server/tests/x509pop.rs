//! x509pop end to end, in process: an rcgen org CA and host certificate,
//! attestation through the Node API, a node alias whose workload entry is
//! signed for the member agent and refused for a non-member; telemetry
//! endpoints scraped over HTTP/1.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SigningKey,
};
use rustls_pki_types::CertificateDer;
use signet_core::x509::build_csr;
use signet_core::{SpiffeId, SystemClock};
use signet_proto::admin::{self, CreateJoinTokenRequest};
use signet_proto::node::{
    attest_params, attest_request, attest_response, AttestParams, AttestRequest, AttestResult,
    BatchSignX509SvidRequest, SignX509SvidParams, X509PopParams,
};
use signet_server::app::start;
use signet_server::config::{
    FileConfig, NodeAttestorConfig, RuntimeConfig, TelemetryConfig, X509PopConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use support::node_client;

fn org_ca() -> (Vec<u8>, KeyPair) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "Org CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap().der().to_vec(), key)
}

fn host_cert(ca: &(Vec<u8>, KeyPair), cn: &str) -> (Vec<u8>, KeyPair) {
    let mut p = CertificateParams::new(vec![format!("{cn}.corp.test")]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca.0.as_slice()), &ca.1).unwrap();
    (p.signed_by(&key, &issuer).unwrap().der().to_vec(), key)
}

/// Attests with `chain`, signing the challenge with `signer`.
async fn attest_x509pop(
    addr: std::net::SocketAddr,
    bundle: &[Vec<u8>],
    chain: &[Vec<u8>],
    signer: &KeyPair,
    svid_key: &KeyPair,
) -> Result<AttestResult, tonic::Status> {
    let mut client = node_client(addr, bundle, None).await.unwrap();
    let placeholder = SpiffeId::parse("spiffe://example.org/ignored").unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tx.send(AttestRequest {
        step: Some(attest_request::Step::Params(AttestParams {
            method: Some(attest_params::Method::X509pop(X509PopParams {
                cert_chain: chain.to_vec(),
            })),
            csr: build_csr(svid_key, &placeholder).unwrap(),
        })),
    })
    .await
    .unwrap();
    let mut stream = client
        .attest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    loop {
        match stream.message().await?.and_then(|m| m.step) {
            Some(attest_response::Step::Challenge(nonce)) => {
                assert_eq!(nonce.len(), 32);
                tx.send(AttestRequest {
                    step: Some(attest_request::Step::ChallengeResponse(
                        signer.sign(&nonce).unwrap(),
                    )),
                })
                .await
                .unwrap();
            }
            Some(attest_response::Step::Result(r)) => return Ok(r),
            None => panic!("stream ended"),
        }
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    let status = out.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn x509pop_agent_gets_workloads_of_its_node_alias_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = org_ca();
    let bundle_path = dir.path().join("org-ca.pem");
    std::fs::write(
        &bundle_path,
        signet_core::pem::encode_certs([ca.0.as_slice()]),
    )
    .unwrap();
    let config = RuntimeConfig::try_from(FileConfig {
        data_dir: Some(dir.path().join("data")),
        admin_socket: Some(dir.path().join("admin.sock")),
        bind: Some("127.0.0.1:0".into()),
        node_attestor: Some(NodeAttestorConfig {
            x509pop: Some(X509PopConfig {
                ca_bundle_path: bundle_path,
            }),
            tpm: None,
        }),
        telemetry: Some(TelemetryConfig {
            bind: Some("127.0.0.1:0".into()),
        }),
        ..FileConfig::default()
    })
    .unwrap();
    let server = start(config, Arc::new(SystemClock)).await.unwrap();
    let telemetry = server.telemetry_addr.unwrap();
    let mut admin = signet_server::cli::client::connect(&server.admin_socket)
        .await
        .unwrap();
    let bundle = admin
        .get_bundle(admin::GetBundleRequest {})
        .await
        .unwrap()
        .into_inner()
        .x509_authorities;
    assert_eq!(http_get(telemetry, "/live").await.0, 200);
    assert_eq!(http_get(telemetry, "/ready").await.0, 200);

    // Attest edge-1 with its host certificate.
    let (leaf, host_key) = host_cert(&ca, "edge-1");
    let svid_key = KeyPair::generate().unwrap();
    let r = attest_x509pop(
        server.node_addr,
        &bundle,
        std::slice::from_ref(&leaf),
        &host_key,
        &svid_key,
    )
    .await
    .unwrap();
    let fp = hex::encode(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &leaf,
    ));
    assert_eq!(
        r.spiffe_id,
        format!("spiffe://example.org/signet/agent/x509pop/{fp}")
    );
    let agent = admin
        .get_agent(admin::AgentRequest {
            spiffe_id: r.spiffe_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(agent
        .selectors
        .contains(&"x509pop:subject:cn:edge-1".to_owned()));
    assert!(agent
        .selectors
        .contains(&"x509pop:san:dns:edge-1.corp.test".to_owned()));

    // Refusals: wrong CA, wrong key.
    let rogue = org_ca();
    let (rogue_leaf, rogue_key) = host_cert(&rogue, "edge-1");
    let err = attest_x509pop(
        server.node_addr,
        &bundle,
        &[rogue_leaf],
        &rogue_key,
        &svid_key,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("not trusted"), "{err:?}");
    let err = attest_x509pop(
        server.node_addr,
        &bundle,
        std::slice::from_ref(&leaf),
        &rogue_key,
        &svid_key,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // The alias and a workload under it.
    let alias = admin
        .create_entry(admin::Entry {
            spiffe_id: "spiffe://example.org/edge".into(),
            selectors: vec!["x509pop:subject:cn:edge-1".into()],
            node: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(alias.node);
    assert_eq!(alias.parent_id, "spiffe://example.org/signet/server");
    let web = admin
        .create_entry(admin::Entry {
            spiffe_id: "spiffe://example.org/web".into(),
            parent_id: "spiffe://example.org/edge".into(),
            selectors: vec!["unix:uid:1000".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let before = metric(
        &http_get(telemetry, "/metrics").await.1,
        "signet_server_x509_svids_issued_total",
    );
    let wkey = KeyPair::generate().unwrap();
    let web_id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let sign = BatchSignX509SvidRequest {
        params: vec![SignX509SvidParams {
            entry_id: web.id.clone(),
            csr: build_csr(&wkey, &web_id).unwrap(),
        }],
    };
    let mut member = node_client(server.node_addr, &bundle, Some((&r.svid_chain, &svid_key)))
        .await
        .unwrap();
    let res = member
        .batch_sign_x509_svid(sign.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results[0].error_code, 0, "{:?}", res.results[0]);
    assert!(!res.results[0].svid_chain.is_empty());
    let (_, metrics) = http_get(telemetry, "/metrics").await;
    assert!(metric(&metrics, "signet_server_x509_svids_issued_total") > before);
    assert!(
        metrics
            .contains(r#"signet_server_node_attestations_total{method="x509pop",result="ok"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("signet_server_rpc_duration_seconds_bucket"),
        "{metrics}"
    );

    // A join-token agent is no member of the alias.
    let token = admin
        .create_join_token(CreateJoinTokenRequest { ttl: 0 })
        .await
        .unwrap()
        .into_inner()
        .token;
    let okey = KeyPair::generate().unwrap();
    let oid = SpiffeId::parse(&format!(
        "spiffe://example.org/signet/agent/join_token/{token}"
    ))
    .unwrap();
    let mut anon = node_client(server.node_addr, &bundle, None).await.unwrap();
    let mut s = anon
        .attest(tokio_stream::once(AttestRequest {
            step: Some(attest_request::Step::Params(AttestParams {
                method: Some(attest_params::Method::JoinToken(token)),
                csr: build_csr(&okey, &oid).unwrap(),
            })),
        }))
        .await
        .unwrap()
        .into_inner();
    let Some(attest_response::Step::Result(other)) = s.message().await.unwrap().unwrap().step
    else {
        panic!("no result")
    };
    let mut outsider = node_client(server.node_addr, &bundle, Some((&other.svid_chain, &okey)))
        .await
        .unwrap();
    let res = outsider
        .batch_sign_x509_svid(sign)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results[0].error_code, Code::PermissionDenied as i32);
    server.stop().await;
}
