//! Revocation beyond SPIRE: a banned agent is cut off, a revoked JWT is
//! refused everywhere, a revoked X.509 serial is published in a CRL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use signet_proto::workload::{ValidateJwtsvidRequest, X509svidRequest};
use signet_tests::checks::serial_hex;
use signet_tests::workload::{raw_client, with_header};
use signet_tests::{my_uid_selector, start_pair, wait};
use spiffe::WorkloadApiClient;
use tonic::Code;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

#[tokio::test]
async fn banned_agent_is_cut_off_and_its_workloads_lose_their_svids() {
    let (server, agent) = start_pair(&[]).await;
    server.create_entry(
        &server.id("/banned"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let (mut stream, _) = wait::until("an X.509 stream", Duration::from_secs(20), || async {
        let mut s = client.stream_x509_contexts().await.ok()?;
        let first = s.next().await?.ok()?;
        Some((s, first))
    })
    .await;

    server.cli_ok(&["agent", "ban", "--spiffe-id", &agent.spiffe_id]);

    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream answers within 10 s");
    // The stream ends as the standard says a caller's last identity going
    // ends it: PermissionDenied "no identity issued".
    assert!(
        matches!(end, Some(Err(spiffe::WorkloadApiError::NoIdentityIssued))),
        "the open stream ends: {end:?}"
    );
    let err = client
        .fetch_x509_svid()
        .await
        .expect_err("no SVID after the ban");
    assert!(
        matches!(err, spiffe::WorkloadApiError::NoIdentityIssued),
        "{err:?}"
    );
    let shown = server.cli_ok(&[
        "agent",
        "show",
        "--spiffe-id",
        &agent.spiffe_id,
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["banned"], true);
    assert!(
        !agent.cli(&["healthcheck"]).status.success(),
        "a banned agent is not healthy"
    );
}

#[tokio::test]
async fn revoked_jwt_is_refused_by_validate_and_introspection() {
    let (server, agent) = start_pair(&[]).await;
    server.create_entry(
        &server.id("/jwt-revoked"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let svid = wait::until("a JWT-SVID", Duration::from_secs(20), || async {
        client.fetch_jwt_svid(["svc"], None).await.ok()
    })
    .await;
    let token = svid.token().to_string();
    let (_, claims) = signet_core::jwt::parse_unverified(&token).unwrap();
    let jti = claims["jti"].as_str().unwrap().to_string();

    let active = server.cli(&["introspect", "--token", &token]);
    assert_eq!(
        active.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&active.stderr)
    );
    assert!(String::from_utf8_lossy(&active.stdout).starts_with("active"));
    client
        .validate_jwt_token("svc", &token)
        .await
        .expect("valid before revocation");

    server.cli_ok(&[
        "revoke",
        "jwt",
        "--jti",
        &jti,
        "--reason",
        "key leaked in a log",
    ]);

    let mut raw = raw_client(&agent.socket_path).await;
    let status = wait::until(
        "ValidateJWTSVID to refuse the revoked token",
        Duration::from_secs(5),
        || {
            let mut raw = raw.clone();
            let token = token.clone();
            async move {
                raw.validate_jwtsvid(with_header(ValidateJwtsvidRequest {
                    audience: "svc".into(),
                    svid: token,
                }))
                .await
                .err()
            }
        },
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("revoked"), "{}", status.message());
    let _ = &mut raw;

    let inactive = server.cli(&["introspect", "--token", &token, "--output", "json"]);
    assert_eq!(inactive.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&inactive.stdout).unwrap();
    assert_eq!(v["active"], false);
    assert_eq!(v["reason"], "revoked");

    // The agent does not hand out the revoked token again.
    let fresh = client.fetch_jwt_svid(["svc"], None).await.unwrap();
    assert_ne!(fresh.token(), token);
}

#[tokio::test]
async fn revoked_serial_is_published_in_a_crl_signed_by_its_ca() {
    let (server, agent) = start_pair(&[]).await;
    server.create_entry(
        &server.id("/x509-revoked"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let svid = wait::until("an SVID", Duration::from_secs(20), || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;
    let serial = serial_hex(svid.leaf().as_bytes());

    server.cli_ok(&[
        "revoke",
        "x509",
        "--serial",
        &serial,
        "--reason",
        "host compromised",
    ]);

    let mut raw = raw_client(&agent.socket_path).await;
    let crls = wait::until("a CRL on the Workload API", Duration::from_secs(10), || {
        let mut raw = raw.clone();
        async move {
            let mut s = raw
                .fetch_x509svid(with_header(X509svidRequest {}))
                .await
                .ok()?
                .into_inner();
            let msg = s.message().await.ok()??;
            (!msg.crl.is_empty()).then_some(msg.crl)
        }
    })
    .await;
    let _ = &mut raw;
    let ca_der = server.bundle_der().remove(0);
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let listed = crls.iter().any(|der| {
        let (_, crl) = CertificateRevocationList::from_der(der).expect("a DER CRL");
        crl.verify_signature(ca.public_key()).is_ok()
            && crl.iter_revoked_certificates().any(|r| {
                r.raw_serial()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    == serial
            })
    });
    assert!(
        listed,
        "the revoked serial {serial} is in a CRL signed by the CA"
    );

    // The agent replaces the revoked SVID.
    wait::until(
        "a new SVID replacing the revoked one",
        Duration::from_secs(10),
        || async {
            let s = client.fetch_x509_svid().await.ok()?;
            (serial_hex(s.leaf().as_bytes()) != serial).then_some(())
        },
    )
    .await;
}
