//! A workload gets a real X.509-SVID from the agent through independent
//! clients, and keeps getting fresh ones on the same stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use signet_core::{Clock, SystemClock};
use std::time::Duration;

use futures::StreamExt;
use signet_tests::checks::{assert_svid_leaf_profile, now_unix, serial_hex, validity};
use signet_tests::{my_uid_selector, start_pair, wait};
use spiffe::WorkloadApiClient;

#[tokio::test]
async fn workload_fetches_valid_svid_through_spiffe_crate() {
    let (server, agent) = start_pair(&[]).await;
    let id = server.id("/workload/me");
    server.create_entry(
        &id,
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &["--dns", "me.local"],
    );

    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let ctx = wait::until("an X.509 context", Duration::from_secs(20), || async {
        client.fetch_x509_context().await.ok()
    })
    .await;
    let svid = ctx.default_svid().expect("a default SVID");
    assert_eq!(svid.spiffe_id().to_string(), id);

    let chain: Vec<Vec<u8>> = svid
        .cert_chain()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let leaf = &chain[0];
    assert_eq!(assert_svid_leaf_profile(leaf), id);

    // The bundle the workload gets is the server's CA, and the chain verifies against it.
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let bundle: Vec<Vec<u8>> = ctx
        .bundle_set()
        .get(&td)
        .expect("bundle for example.org")
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    assert_eq!(bundle, server.bundle_der());
    let verified =
        signet_core::x509::validate_x509_svid(&chain, &bundle, SystemClock.now()).unwrap();
    assert_eq!(verified.to_string(), id);

    // The private key belongs to the leaf.
    signet_core::x509::key_matches_leaf(leaf, svid.private_key().as_bytes()).unwrap();

    // Default TTL 1h; notBefore back-dated for clock skew.
    let (nb, na) = validity(leaf);
    let now = now_unix();
    assert!(nb < now - 5, "notBefore back-dated, got {nb} vs now {now}");
    assert!(
        na > now + 3500 && na <= now + 3600,
        "1h TTL, got {}",
        na - now
    );
}

#[tokio::test]
async fn workload_fetches_svid_through_agent_cli_and_writes_files() {
    let (server, agent) = start_pair(&[]).await;
    let id = server.id("/workload/cli");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);

    let out_dir = agent.dir.path().join("out");
    let out = wait::until("api fetch x509", Duration::from_secs(20), || async {
        let out = agent.cli(&["api", "fetch", "x509", "--write", out_dir.to_str().unwrap()]);
        out.status.success().then_some(out)
    })
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&id),
        "fetch output names the SPIFFE ID: {stdout}"
    );

    let chain = signet_core::pem::decode_certs(&std::fs::read(out_dir.join("svid.0.pem")).unwrap())
        .unwrap();
    let key =
        signet_core::pem::decode_private_key(&std::fs::read(out_dir.join("svid.0.key")).unwrap())
            .unwrap();
    let bundle =
        signet_core::pem::decode_certs(&std::fs::read(out_dir.join("bundle.0.pem")).unwrap())
            .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out_dir.join("svid.0.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "private key file must be 0600");
    assert_eq!(assert_svid_leaf_profile(&chain[0]), id);
    assert_eq!(
        signet_core::x509::validate_x509_svid(&chain, &bundle, SystemClock.now())
            .unwrap()
            .to_string(),
        id
    );
    signet_core::x509::key_matches_leaf(&chain[0], &key).unwrap();

    let json = agent.cli(&["api", "fetch", "x509", "--output", "json"]);
    assert!(json.status.success());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json output");
    assert_eq!(v["svids"][0]["spiffe_id"], id);
}

#[tokio::test]
async fn stream_delivers_new_svid_before_old_one_expires() {
    let (server, agent) = start_pair(&[]).await;
    let id = server.id("/workload/short");
    server.create_entry(
        &id,
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &["--x509-svid-ttl", "6s"],
    );

    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let mut stream = wait::until(
        "an open X.509 stream with an SVID",
        Duration::from_secs(20),
        || async {
            let mut s = client.stream_x509_contexts().await.ok()?;
            let first = s.next().await?.ok()?;
            Some((s, first))
        },
    )
    .await;
    let first = stream.1;
    let first_leaf = first.default_svid().unwrap().leaf().as_bytes().to_vec();
    let (_, first_expiry) = validity(&first_leaf);

    let next = tokio::time::timeout(Duration::from_secs(10), stream.0.next())
        .await
        .expect("a rotated SVID within 10 s")
        .expect("stream still open")
        .expect("a valid message");
    let received_at = now_unix();
    let next_leaf = next.default_svid().unwrap().leaf().as_bytes().to_vec();
    assert_eq!(next.default_svid().unwrap().spiffe_id().to_string(), id);
    assert_ne!(
        serial_hex(&next_leaf),
        serial_hex(&first_leaf),
        "a new certificate"
    );
    assert!(
        received_at < first_expiry,
        "renewed before the old SVID expired"
    );
    let (_, next_expiry) = validity(&next_leaf);
    assert!(next_expiry > first_expiry);
}

#[tokio::test]
async fn entry_create_and_delete_reach_an_open_stream() {
    let (server, agent) = start_pair(&[]).await;
    let first_id = server.id("/workload/first");
    let second_id = server.id("/workload/second");
    let first = server.create_entry(&first_id, &agent.spiffe_id, &[&my_uid_selector()], &[]);

    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let (mut stream, ctx) = wait::until(
        "an open X.509 stream with an SVID",
        Duration::from_secs(20),
        || async {
            let mut s = client.stream_x509_contexts().await.ok()?;
            let first = s.next().await?.ok()?;
            Some((s, first))
        },
    )
    .await;
    assert_eq!(ctx.svids().len(), 1);

    let second = server.create_entry(&second_id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    let ctx = next_message(&mut stream)
        .await
        .expect("update after entry create");
    let mut ids: Vec<String> = ctx
        .svids()
        .iter()
        .map(|s| s.spiffe_id().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![first_id.clone(), second_id.clone()]);

    server.delete_entry(&second);
    let ctx = next_message(&mut stream)
        .await
        .expect("update after entry delete");
    let ids: Vec<String> = ctx
        .svids()
        .iter()
        .map(|s| s.spiffe_id().to_string())
        .collect();
    assert_eq!(ids, vec![first_id]);

    server.delete_entry(&first);
    let err = next_message(&mut stream)
        .await
        .expect_err("stream ends when the last identity goes");
    assert!(
        matches!(err, spiffe::WorkloadApiError::NoIdentityIssued),
        "expected NoIdentityIssued, got {err:?}"
    );
}

async fn next_message<S>(stream: &mut S) -> Result<spiffe::X509Context, spiffe::WorkloadApiError>
where
    S: futures::Stream<Item = Result<spiffe::X509Context, spiffe::WorkloadApiError>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a stream message within 10 s")
        .expect("stream still open")
}
