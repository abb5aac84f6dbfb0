//! Status codes of the Workload API for bad or unentitled callers, exactly as
//! the SPIFFE standard and real clients expect them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use signet_proto::workload::{X509BundlesRequest, X509svidRequest};
use signet_tests::workload::{raw_client, with_header};
use signet_tests::{my_uid_selector, start_pair, wait};
use tonic::Code;

#[tokio::test]
async fn request_without_security_header_is_invalid_argument() {
    let (server, agent) = start_pair(&[]).await;
    server.create_entry(
        &server.id("/w"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let mut client = raw_client(&agent.socket_path).await;

    let err = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .expect_err("no header");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("security header"),
        "{}",
        err.message()
    );

    let err = client
        .fetch_x509_bundles(X509BundlesRequest {})
        .await
        .expect_err("no header");
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = client
        .fetch_jwt_bundles(signet_proto::workload::JwtBundlesRequest {})
        .await
        .expect_err("no header");
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::InvalidArgument,
            "security header missing from request"
        )
    );
    let err = client
        .validate_jwtsvid(signet_proto::workload::ValidateJwtsvidRequest {
            audience: "a".into(),
            svid: "x.y.z".into(),
        })
        .await
        .expect_err("no header");
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::InvalidArgument,
            "security header missing from request"
        )
    );

    let mut wrong = tonic::Request::new(X509svidRequest {});
    wrong
        .metadata_mut()
        .insert("workload.spiffe.io", "false".parse().unwrap());
    let err = client
        .fetch_x509svid(wrong)
        .await
        .expect_err("wrong header value");
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn caller_without_entry_gets_no_identity_issued() {
    let (server, agent) = start_pair(&[]).await;
    // An entry for someone else: this process's uid does not match.
    server.create_entry(
        &server.id("/other"),
        &agent.spiffe_id,
        &["unix:uid:4294967000"],
        &[],
    );

    let mut client = raw_client(&agent.socket_path).await;
    let status = wait::until(
        "a definite answer from the agent",
        Duration::from_secs(20),
        || {
            let mut client = client.clone();
            async move {
                let result = match client.fetch_x509svid(with_header(X509svidRequest {})).await {
                    Ok(resp) => resp.into_inner().next().await?.map(|_| ()),
                    Err(e) => Err(e),
                };
                match result {
                    Err(s) if s.code() == Code::Unavailable => None,
                    other => Some(other),
                }
            }
        },
    )
    .await;
    let status = status.expect_err("no SVID for an unregistered caller");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no identity issued");

    let bundles = match client
        .fetch_x509_bundles(with_header(X509BundlesRequest {}))
        .await
    {
        Ok(resp) => resp
            .into_inner()
            .next()
            .await
            .expect("a message")
            .map(|_| ()),
        Err(e) => Err(e),
    };
    assert_eq!(
        bundles
            .expect_err("no bundle for an unregistered caller")
            .code(),
        Code::PermissionDenied
    );

    let spiffe = spiffe::WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let err = spiffe.fetch_x509_svid().await.expect_err("no identity");
    assert!(
        matches!(err, spiffe::WorkloadApiError::NoIdentityIssued),
        "{err:?}"
    );
}
