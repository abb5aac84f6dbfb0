//! The server's CA and JWT keys in an HSM's token (SoftHSM2 over PKCS#11):
//! SVIDs chain to a CA whose private key exists only in the token, rotation
//! makes and destroys token objects, a restart signs with the same keys,
//! and the data dir holds no private key at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use signet_tests::checks::{authority_id, issuer_index};
use signet_tests::softhsm::SoftHsm;
use signet_tests::{my_uid_selector, wait, TestAgent, TestServer};
use spiffe::{JwtSvid, WorkloadApiClient, X509Context};

async fn server_on(hsm: &SoftHsm, dir: &Path, extra: &[&str]) -> TestServer {
    let config = hsm.server_config(dir);
    let prefix = hsm.env_prefix();
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend(extra);
    TestServer::start_under(&prefix, &args).await
}

/// (SPIFFE ID, the id of the CA that signed it) of each SVID in `ctx`.
fn issuers(ctx: &X509Context) -> Vec<(String, String)> {
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let bundle: Vec<Vec<u8>> = ctx
        .bundle_set()
        .get(&td)
        .expect("own bundle")
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    ctx.svids()
        .iter()
        .map(|svid| {
            let chain: Vec<Vec<u8>> = svid
                .cert_chain()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect();
            let i = issuer_index(&chain, &bundle).expect("the SVID verifies against its bundle");
            (svid.spiffe_id().to_string(), authority_id(&bundle[i]))
        })
        .collect()
}

/// Every file under `dir` that holds a PEM private key.
fn private_key_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .map(|b| b.windows(11).any(|w| w == b"PRIVATE KEY"))
                .unwrap_or(false)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

async fn validated_jwt(client: &WorkloadApiClient, audience: &str) -> JwtSvid {
    let svid = wait::until("a JWT-SVID", Duration::from_secs(20), || async {
        client.fetch_jwt_svid([audience], None).await.ok()
    })
    .await;
    client
        .validate_jwt_token(audience, svid.token())
        .await
        .expect("the agent validates the token against the bundle");
    svid
}

#[tokio::test]
async fn a_server_with_its_keys_in_a_token_issues_rotates_and_survives_a_restart() {
    let hsm = SoftHsm::new("signet-ca");
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_on(&hsm, dir.path(), &[]).await;
    let agent = TestAgent::start(&server).await;
    let first_id = server.id("/hsm/first");
    server.create_entry(&first_id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let ctx = wait::until("an X509-SVID", Duration::from_secs(20), || async {
        client.fetch_x509_context().await.ok()
    })
    .await;
    let old = server.authority_in_state("x509", "active").unwrap();
    assert_eq!(issuers(&ctx), vec![(first_id.clone(), old.clone())]);
    let jwt = validated_jwt(&client, "hsm-a").await;
    let (header, _) = signet_core::jwt::parse_unverified(jwt.token()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let kid = header["kid"].as_str().unwrap().to_owned();

    // The keys are token objects, named after their authorities; none is on disk.
    let labels = hsm.private_key_labels();
    assert_eq!(
        labels,
        {
            let mut want = vec![format!("signet:jwt:{kid}"), format!("signet:x509:{old}")];
            want.sort();
            want
        },
        "the token holds exactly the active CA and JWT keys"
    );
    for key in hsm.objects().iter().filter(|o| o.class == "Private Key") {
        assert!(
            key.access.contains("sensitive") && key.access.contains("never extractable"),
            "{key:?}"
        );
        assert_eq!(key.usage, "sign", "{key:?}");
    }
    assert_eq!(private_key_files(server.data_path()), Vec::<String>::new());
    assert!(!server.data_path().join("ca").exists());

    // Rotation: the next CA is made in the token; the old one's objects are
    // destroyed once it is revoked.
    let new = server.cli_ok(&["authority", "x509", "prepare"]);
    assert!(hsm
        .private_key_labels()
        .contains(&format!("signet:x509:{new}")));
    server.cli_ok(&["authority", "x509", "activate"]);
    server.cli_ok(&["authority", "x509", "taint", "--id", &old]);
    wait::until(
        "an SVID from the new CA",
        Duration::from_secs(15),
        || async {
            let ctx = client.fetch_x509_context().await.ok()?;
            (issuers(&ctx) == vec![(first_id.clone(), new.clone())]).then_some(())
        },
    )
    .await;
    server.cli_ok(&["authority", "x509", "revoke", "--id", &old]);
    let labels = hsm.private_key_labels();
    assert!(
        !labels.iter().any(|l| l.contains(&old)),
        "the revoked CA's key left the token: {labels:?}"
    );
    assert!(labels.contains(&format!("signet:x509:{new}")));

    // A restart finds the keys in the token: same bundle, and what it signs
    // now (a new entry's SVID, a new audience's token) verifies.
    let bundle = server.bundle_der();
    server.restart().await;
    assert_eq!(server.bundle_der(), bundle);
    let second_id = server.id("/hsm/after-restart");
    server.create_entry(&second_id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    wait::until(
        "an SVID signed after the restart",
        Duration::from_secs(20),
        || async {
            let ctx = client.fetch_x509_context().await.ok()?;
            issuers(&ctx)
                .contains(&(second_id.clone(), new.clone()))
                .then_some(())
        },
    )
    .await;
    validated_jwt(&client, "hsm-after-restart").await;
    assert_eq!(private_key_files(server.data_path()), Vec::<String>::new());
}

#[tokio::test]
async fn rsa_jwt_keys_live_in_the_token_too_and_a_wrong_pin_stops_the_server_cleanly() {
    let hsm = SoftHsm::new("signet-rsa");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rsa.toml");
    std::fs::write(
        &config,
        format!(
            "jwt_key_type = \"rsa-2048\"\n{}",
            std::fs::read_to_string(hsm.server_config(dir.path())).unwrap()
        ),
    )
    .unwrap();
    let prefix = hsm.env_prefix();
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let server = TestServer::start_under(&prefix, &["--config", config.to_str().unwrap()]).await;
    let agent = TestAgent::start(&server).await;
    server.create_entry(
        &server.id("/hsm/rsa"),
        &agent.spiffe_id,
        &[&my_uid_selector()],
        &[],
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let jwt = validated_jwt(&client, "cloud").await;
    let (header, _) = signet_core::jwt::parse_unverified(jwt.token()).unwrap();
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().unwrap();
    assert!(hsm
        .private_key_labels()
        .contains(&format!("signet:jwt:{kid}")));

    // A wrong PIN: the server says which token refused it, and never the PIN.
    std::fs::write(hsm.pin_file(), "00000000\n").unwrap();
    let out = std::process::Command::new("env")
        .arg(format!("SOFTHSM2_CONF={}", hsm.conf().display()))
        .arg(&signet_tests::bins::bins().server)
        .args(["run", "--config", config.to_str().unwrap()])
        .arg("--data-dir")
        .arg(dir.path().join("wrong-pin"))
        .arg("--admin-socket")
        .arg(dir.path().join("wrong-pin.sock"))
        .args(["--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("PKCS#11 login to token \"signet-rsa\""),
        "{stderr}"
    );
    assert!(!stderr.contains("00000000"), "{stderr}");
}
