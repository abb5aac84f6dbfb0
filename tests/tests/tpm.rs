//! tpm node attestation against real software TPMs (Debian's swtpm,
//! provisioned with tpm2-tools): a node proves its TPM-resident key and
//! its EK; a copied certificate, on another TPM, is useless; PCR selectors
//! follow what each TPM measured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use prost::Message;
use signet_proto::node::{attest_params, TpmChallenge, TpmParams};
use signet_tests::bins::bins;
use signet_tests::node::AttestExchange;
use signet_tests::tpm::{key_certificate, SoftTpm, KEY_HANDLE};
use signet_tests::x509pop::{org_ca, write, OrgCa};
use signet_tests::{my_uid_selector, wait, TestAgent, TestServer};
use spiffe::WorkloadApiClient;
use tonic::Code;

const PCR: u32 = 16;

async fn tpm_server(dir: &Path, ca: &OrgCa, flags: &[&str]) -> TestServer {
    let bundle = write(dir, "owner-ca.pem", &ca.cert.pem());
    let config = write(
        dir,
        "server.toml",
        &format!(
            "[node_attestor.tpm]\nca_bundle_path = {:?}\npcrs = [{PCR}]\n",
            bundle.to_str().unwrap()
        ),
    );
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(flags);
    TestServer::start_with(&args).await
}

/// An agent config for `tpm` with `cert` (DER) for its key; `ek_handle`
/// names the persisted EK, else the agent makes it from the template.
fn agent_config(dir: &Path, name: &str, tpm: &SoftTpm, cert: &[u8], ek_handle: bool) -> String {
    agent_config_with(dir, name, tpm, cert, ek_handle, "")
}

/// [`agent_config`], `more` appended.
fn agent_config_with(
    dir: &Path,
    name: &str,
    tpm: &SoftTpm,
    cert: &[u8],
    ek_handle: bool,
    more: &str,
) -> String {
    let cert = write(
        dir,
        &format!("{name}.pem"),
        &signet_core::pem::encode_certs([cert]),
    );
    let ek = if ek_handle {
        "ek_handle = 0x81010001\n"
    } else {
        ""
    };
    let config = write(
        dir,
        &format!("{name}.toml"),
        &format!(
            "[node_attestor.tpm]\ntcti = {:?}\ncertificate_path = {:?}\nkey_handle = {KEY_HANDLE}\n{ek}{more}",
            tpm.tcti(),
            cert.to_str().unwrap()
        ),
    );
    config.to_str().unwrap().to_owned()
}

async fn agent_selectors(server: &TestServer, agent_id: &str) -> Vec<String> {
    let shown = wait::until(
        "the tpm agent on the server",
        Duration::from_secs(20),
        || async {
            let out = server.cli(&["agent", "show", "--spiffe-id", agent_id, "--output", "json"]);
            out.status
                .success()
                .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
        },
    )
    .await;
    assert_eq!(shown["attestation_type"], "tpm", "{shown}");
    serde_json::from_value(shown["selectors"].clone()).unwrap()
}

#[tokio::test]
async fn nodes_attest_with_their_tpm_and_pcr_selectors_follow_their_measurements() {
    let dir = tempfile::tempdir().unwrap();
    let ca = org_ca("Example Owner CA");
    // Short agent SVIDs: node A renews with keys made in its TPM.
    let server = tpm_server(dir.path(), &ca, &["--default-x509-svid-ttl", "6s"]).await;
    let (a, b) = (SoftTpm::start().await, SoftTpm::start().await);
    let cert_a = key_certificate(&ca, &a.provision(true), "node-a.example");
    let cert_b = key_certificate(&ca, &b.provision(true), "node-b.example");
    let measured = a.extend_pcr(PCR, b"node-a boot measurement");
    assert_ne!(measured, "0".repeat(64));
    let (ek_a, ek_b) = (a.ek_hash(), b.ek_hash());

    // A's agent makes its EK from the default template; B's reads it at its handle.
    let key_in_tpm = format!("[key_manager.tpm]\ntcti = {:?}\n", a.tcti());
    let config_a = agent_config_with(dir.path(), "a", &a, &cert_a, false, &key_in_tpm);
    let mut agent_a = TestAgent::spawn_with(&server, None, &["--config", &config_a]);
    agent_a.wait_healthy().await;
    let id_a = server.id(&format!("/signet/agent/tpm/{ek_a}"));
    let selectors = agent_selectors(&server, &id_a).await;
    for wanted in [
        format!("tpm:ek_hash:{ek_a}"),
        "tpm:subject:cn:node-a.example".into(),
        format!("tpm:pcr:{PCR}:{measured}"),
    ] {
        assert!(selectors.contains(&wanted), "{wanted} not in {selectors:?}");
    }

    let config_b = agent_config(dir.path(), "b", &b, &cert_b, true);
    let mut agent_b = TestAgent::spawn_with(&server, None, &["--config", &config_b]);
    agent_b.wait_healthy().await;
    let selectors_b =
        agent_selectors(&server, &server.id(&format!("/signet/agent/tpm/{ek_b}"))).await;
    assert!(
        selectors_b.contains(&format!("tpm:pcr:{PCR}:{}", "0".repeat(64))),
        "{selectors_b:?}"
    );
    assert!(
        !selectors_b.iter().any(|s| s.contains(&measured)),
        "{selectors_b:?}"
    );

    // Nodes whose PCR holds the measured value, and a workload on them:
    // served on A, not on B.
    let measured_nodes = server.id("/fleet/measured");
    server.cli_ok(&[
        "entry",
        "create",
        "--node",
        "--spiffe-id",
        &measured_nodes,
        "--selector",
        &format!("tpm:pcr:{PCR}:{measured}"),
    ]);
    let workload = server.id("/edge/measured-workload");
    server.create_entry(&workload, &measured_nodes, &[&my_uid_selector()], &[]);
    let client_a = WorkloadApiClient::connect_to(agent_a.endpoint())
        .await
        .unwrap();
    let svid = wait::until(
        "an SVID on the measured node",
        Duration::from_secs(20),
        || async { client_a.fetch_x509_svid().await.ok() },
    )
    .await;
    assert_eq!(svid.spiffe_id().to_string(), workload);
    // B serves the same workload an entry of its own, and only that.
    let own = server.id("/edge/node-b-workload");
    let id_b = server.id(&format!("/signet/agent/tpm/{ek_b}"));
    server.create_entry(&own, &id_b, &[&my_uid_selector()], &[]);
    let client_b = WorkloadApiClient::connect_to(agent_b.endpoint())
        .await
        .unwrap();
    let served_b = wait::until("node B's own entry", Duration::from_secs(20), || async {
        let svids = client_b.fetch_all_x509_svids().await.ok()?;
        let ids: Vec<String> = svids.iter().map(|s| s.spiffe_id().to_string()).collect();
        ids.contains(&own).then_some(ids)
    })
    .await;
    assert_eq!(served_b, [own], "node B is not a measured node");

    // A's own key lives in its TPM: the data dir holds the TPM's blobs,
    // never a private key, and each renewal makes a new key there.
    let key_file = agent_a.data_dir.join("agent_key.pem");
    let first_key = std::fs::read_to_string(&key_file).unwrap();
    assert!(first_key.contains("BEGIN TPM2 PRIVATE"), "{first_key}");
    assert!(!first_key.contains("BEGIN PRIVATE KEY"));
    wait::until(
        "a renewal with a new TPM key",
        Duration::from_secs(30),
        || async {
            let key = std::fs::read_to_string(&key_file).ok()?;
            (key != first_key && agent_a.log_text().contains("agent SVID renewed")).then_some(())
        },
    )
    .await;
    let client_a = WorkloadApiClient::connect_to(agent_a.endpoint())
        .await
        .unwrap();
    assert_eq!(
        client_a
            .fetch_x509_svid()
            .await
            .unwrap()
            .spiffe_id()
            .to_string(),
        workload
    );

    // Evicted, A attests again by itself with its TPM and keeps its ID.
    server.cli_ok(&["agent", "evict", "--spiffe-id", &id_a]);
    agent_a.restart().await;
    agent_selectors(&server, &id_a).await;
}

/// Runs the tpm exchange by hand up to the challenge.
async fn challenge_for(
    server: &TestServer,
    params: TpmParams,
) -> Result<TpmChallenge, tonic::Status> {
    let exchange = AttestExchange::begin(server, None, attest_params::Method::Tpm(params)).await?;
    Ok(TpmChallenge::decode(exchange.challenge.as_slice()).unwrap())
}

/// Runs an agent on `tpm` with `cert` until it gives up; its exit status
/// and stderr.
async fn copied_agent(
    server: &TestServer,
    dir: &Path,
    tpm: &SoftTpm,
    cert: &[u8],
) -> (std::process::ExitStatus, String) {
    let config = agent_config(dir, "copied", tpm, cert, true);
    let data = dir.join("copied-data");
    let mut cmd = tokio::process::Command::new(&bins().agent);
    cmd.args(["run", "--config", &config, "--insecure-bootstrap"])
        .args([
            "--trust-domain",
            &server.trust_domain,
            "--server-address",
            &server.addr,
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--socket-path")
        .arg(dir.join("copied.sock"))
        .env("TSS2_LOG", "all+none")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the agent gives up on a refused attestation")
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The TPMT_PUBLIC of an object, as tpm2-tools reads it from the TPM.
fn tpmt_public(tpm: &SoftTpm, handle: &str) -> Vec<u8> {
    let file = format!("{handle}.pub");
    let out = tpm
        .tool("tpm2_readpublic")
        .args(["-c", handle, "-f", "tss", "-o", &file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // A TPM2B_PUBLIC: the size, then the TPMT_PUBLIC.
    let blob = std::fs::read(tpm.path(&file)).unwrap();
    let size = u16::from_be_bytes([blob[0], blob[1]]) as usize;
    assert_eq!(size, blob.len() - 2);
    blob[2..].to_vec()
}

#[tokio::test]
async fn a_copied_certificate_without_its_tpm_is_useless() {
    let dir = tempfile::tempdir().unwrap();
    let ca = org_ca("Example Owner CA");
    let server = tpm_server(dir.path(), &ca, &[]).await;
    let (a, b) = (SoftTpm::start().await, SoftTpm::start().await);
    let cert_a = key_certificate(&ca, &a.provision(false), "node-a.example");
    b.provision(false);

    // B's agent with A's certificate: the certificate does not certify B's key.
    let (status, stderr) = copied_agent(&server, dir.path(), &b, &cert_a).await;
    assert!(
        !status.success(),
        "the agent with a copied certificate must not run: {stderr}"
    );
    assert!(stderr.contains("does not certify the key sent"), "{stderr}");

    // A TPM that claims A's key (its public part, A's Name) with A's
    // certificate gets a challenge sealed to the EK it names; B cannot
    // open one sealed to its own EK for A's key, nor one sealed to A's EK.
    let key_a = tpmt_public(&a, KEY_HANDLE);
    for (ek_from, what) in [(&b, "B's EK"), (&a, "A's EK")] {
        let challenge = challenge_for(
            &server,
            TpmParams {
                ek_public: tpmt_public(ek_from, signet_tests::tpm::EK_HANDLE),
                attestation_key_public: key_a.clone(),
                cert_chain: vec![cert_a.clone()],
            },
        )
        .await
        .unwrap_or_else(|e| panic!("challenge for {what}: {e}"));
        let opened = b.activate_credential(&challenge.id_object, &challenge.encrypted_secret);
        assert!(
            opened.is_err(),
            "B opened the credential sealed with {what}"
        );
    }
    // The genuine TPM opens its own (the control).
    let challenge = challenge_for(
        &server,
        TpmParams {
            ek_public: tpmt_public(&a, signet_tests::tpm::EK_HANDLE),
            attestation_key_public: key_a,
            cert_chain: vec![cert_a.clone()],
        },
    )
    .await
    .unwrap();
    assert_eq!(
        a.activate_credential(&challenge.id_object, &challenge.encrypted_secret)
            .unwrap()
            .len(),
        32
    );

    // A key that could have come from outside the TPM is refused outright.
    let mut imported = tpmt_public(&a, KEY_HANDLE);
    imported[7] &= !0x02; // fixedTPM cleared (TPMA_OBJECT, low byte)
    let err = challenge_for(
        &server,
        TpmParams {
            ek_public: tpmt_public(&a, signet_tests::tpm::EK_HANDLE),
            attestation_key_public: imported,
            cert_chain: vec![cert_a],
        },
    )
    .await
    .expect_err("a key without fixedTPM");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("fixedTPM"), "{}", err.message());
}
