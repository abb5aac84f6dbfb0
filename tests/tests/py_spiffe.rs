//! py-spiffe, a second independent client, uses Signet unmodified for X.509
//! and JWT. Python 3 and py-spiffe are prerequisites: without them the test
//! fails saying what to install (scripts/test installs py-spiffe).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use signet_tests::{my_uid_selector, start_pair};

fn python() -> &'static str {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "python3 is missing: install it (apt-get install python3 python3-pip), then `pip install spiffe==0.3.2`"
    );
    "python3"
}

#[tokio::test]
async fn py_spiffe_fetches_x509_and_jwt_and_validates() {
    let python = python();
    let (server, agent) = start_pair(&[]).await;
    let id = server.id("/workload/python");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/check_spiffe.py");
    let out = tokio::task::spawn_blocking({
        let endpoint = agent.endpoint();
        move || {
            Command::new(python)
                .arg(script)
                .arg("svc-py")
                .env("SPIFFE_ENDPOINT_SOCKET", endpoint)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "py-spiffe failed (install it with `pip install spiffe==0.3.2`, as scripts/test does): {stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from the script");
    assert_eq!(v["x509_spiffe_id"], id);
    assert_eq!(v["x509_chain_len"], 1);
    assert_eq!(v["bundle_authorities"], 1);
    assert_eq!(v["jwt_spiffe_id"], id);
    assert_eq!(v["jwt_audience"], serde_json::json!(["svc-py"]));
    assert_eq!(v["validated_spiffe_id"], id);
    assert_eq!(v["local_spiffe_id"], id);
}
