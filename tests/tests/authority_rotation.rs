//! The server's authorities rotate by themselves (prepared, active, old) and
//! on command (taint, revoke), and workloads stay served throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use signet_tests::checks::{authority_id, issuer_index};
use signet_tests::{my_uid_selector, start_pair, wait};
use spiffe::{WorkloadApiClient, X509Context};

fn chain_and_bundle(ctx: &X509Context) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let svid = ctx.default_svid().expect("an SVID");
    let chain = svid
        .cert_chain()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let bundle = ctx
        .bundle_set()
        .get(&td)
        .expect("own bundle")
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    (chain, bundle)
}

#[tokio::test]
async fn ca_rotation_keeps_workloads_served_across_two_rotations() {
    // CA TTL 12 s: a new CA is prepared at 6 s and activated at 10 s, twice in ~16 s.
    let (server, agent) = start_pair(&["--ca-ttl", "12s"]).await;
    server.create_entry(
        &server.id("/rotating"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let mut stream = wait::until("an X.509 stream", Duration::from_secs(20), || async {
        let mut s = client.stream_x509_contexts().await.ok()?;
        let first = s.next().await?.ok()?;
        Some((s, first))
    })
    .await;

    // Every CA that ever signed our SVID, and every CA seen in a bundle before.
    let mut issuers: Vec<String> = Vec::new();
    let mut seen_in_bundle: HashSet<String> = HashSet::new();
    let mut check = |ctx: &X509Context| {
        let (chain, bundle) = chain_and_bundle(ctx);
        let i = issuer_index(&chain, &bundle).expect("the SVID verifies against its bundle, now");
        let issuer = authority_id(&bundle[i]);
        if issuers.last() != Some(&issuer) {
            assert!(
                issuers.is_empty() || seen_in_bundle.contains(&issuer),
                "a new CA was in the bundle before it signed anything"
            );
            issuers.push(issuer);
        }
        seen_in_bundle.extend(bundle.iter().map(|c| authority_id(c)));
        issuers.len()
    };
    let mut distinct = check(&stream.1);

    // Meanwhile a second client fetches every 200 ms, until the watcher has
    // seen the rotations: there must be no gap.
    let done = std::sync::atomic::AtomicBool::new(false);
    let poller = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut fetches = 0;
        let mut polled_issuers = HashSet::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst)
            && tokio::time::Instant::now() < deadline
        {
            let ctx = client
                .fetch_x509_context()
                .await
                .expect("served at every moment");
            let (chain, bundle) = chain_and_bundle(&ctx);
            let i = issuer_index(&chain, &bundle).expect("a valid SVID at every moment");
            polled_issuers.insert(authority_id(&bundle[i]));
            fetches += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (fetches, polled_issuers.len())
    };
    let watcher = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while distinct < 3 && tokio::time::Instant::now() < deadline {
            let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), stream.0.next()).await
            else {
                continue;
            };
            distinct = check(&msg.expect("a valid stream message"));
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        distinct
    };
    let ((fetches, polled_issuers), distinct) = tokio::join!(poller, watcher);
    assert!(
        distinct >= 3,
        "SVIDs from 3 successive CAs (two rotations), saw {distinct}"
    );
    // The poller's fetches spanned a rotation (how many depends on how fast
    // the rotations came, not on the code).
    assert!(
        polled_issuers >= 2,
        "{fetches} fetches saw SVIDs of {polled_issuers} CA(s)"
    );
}

#[tokio::test]
async fn taint_reissues_at_once_and_revoke_removes_from_bundle() {
    let (server, agent) = start_pair(&[]).await;
    server.create_entry(
        &server.id("/tainted"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let first = wait::until("an SVID", Duration::from_secs(20), || async {
        client.fetch_x509_context().await.ok()
    })
    .await;
    let (chain, bundle) = chain_and_bundle(&first);
    let old = authority_id(&bundle[issuer_index(&chain, &bundle).unwrap()]);
    assert_eq!(
        server.authority_in_state("x509", "active").as_deref(),
        Some(old.as_str())
    );

    let prepared = server.cli_ok(&["authority", "x509", "prepare"]);
    let activated = server.cli_ok(&["authority", "x509", "activate"]);
    assert_eq!(prepared, activated);
    // Tainting the active authority is refused.
    assert!(!server
        .cli(&["authority", "x509", "taint", "--id", &activated])
        .status
        .success());
    server.cli_ok(&["authority", "x509", "taint", "--id", &old]);

    // The SVID (1 h TTL) is re-issued by the new CA now, not at half-life.
    let reissued = wait::until(
        "an SVID from the new CA",
        Duration::from_secs(10),
        || async {
            let ctx = client.fetch_x509_context().await.ok()?;
            let (chain, bundle) = chain_and_bundle(&ctx);
            (authority_id(&bundle[issuer_index(&chain, &bundle)?]) == activated).then_some(ctx)
        },
    )
    .await;
    let (_, bundle) = chain_and_bundle(&reissued);
    assert!(
        bundle.iter().any(|c| authority_id(c) == old),
        "a tainted CA stays in the bundle until revoked"
    );

    server.cli_ok(&["authority", "x509", "revoke", "--id", &old]);
    wait::until(
        "the revoked CA gone from the workload's bundle",
        Duration::from_secs(10),
        || async {
            let ctx = client.fetch_x509_context().await.ok()?;
            let (_, bundle) = chain_and_bundle(&ctx);
            (!bundle.iter().any(|c| authority_id(c) == old)).then_some(())
        },
    )
    .await;
    assert!(!server.bundle_der().iter().any(|c| authority_id(c) == old));
}
