//! The audit chain end to end: a server's decisions (attestation, X.509 and
//! JWT issuance) leave records `audit show` finds, `audit verify` passes
//! the untouched chain and names the first bad record after an edit, a
//! removal, a swap and a cut tail done to the SQLite file, and a consistent
//! rewrite of every hash is caught by the checkpoint file outside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use signet_tests::bins::bins;
use signet_tests::{my_uid_selector, wait, TestAgent, TestServer};
use spiffe::WorkloadApiClient;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

fn audit(server: &TestServer, args: &[&str]) -> Output {
    Command::new(&bins().server)
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .output()
        .expect("run signet-server audit")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Runs `sql` on the server's SQLite file (the server stopped).
async fn tamper(server: &TestServer, sql: &str) {
    let mut conn = SqliteConnectOptions::new()
        .filename(server.data_dir.join("datastore.sqlite3"))
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn decisions_are_recorded_and_every_kind_of_tampering_is_named() {
    let mut server = TestServer::start_sqlite().await;
    let agent = TestAgent::start(&server).await;
    let id = server.id("/audited");
    server.create_entry(&id, &agent.spiffe_id, &[&my_uid_selector()], &[]);
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    wait::until("an X509-SVID", Duration::from_secs(20), || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;
    client.fetch_jwt_svid(["svc"], None).await.unwrap();

    let shown = audit(&server, &["show", "--output", "json"]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let records: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    let records = records["records"].as_array().unwrap().clone();
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        records.iter().filter(|r| r["kind"] == kind).collect()
    };
    let attested = of("node_attestation");
    assert_eq!(attested.len(), 1, "{records:?}");
    assert_eq!(attested[0]["agent_id"], agent.spiffe_id.as_str());
    assert_eq!(attested[0]["outcome"], "ok");
    assert_eq!(attested[0]["source"], "127.0.0.1");
    let issued = of("x509_svid_issued");
    assert!(issued
        .iter()
        .any(|r| r["spiffe_id"] == id.as_str() && r["agent_id"] == agent.spiffe_id.as_str()));
    let jwt = of("jwt_svid_issued");
    assert!(jwt
        .iter()
        .any(|r| r["spiffe_id"] == id.as_str() && r["audience"][0] == "svc"));
    // Admin API changes: caller, verb, arguments, never the join token.
    let admin = of("admin");
    let created = admin
        .iter()
        .find(|r| r["verb"] == "entry.create")
        .expect("an entry.create record");
    assert_eq!(created["args"]["spiffe_id"], id.as_str());
    assert_eq!(
        created["caller"],
        format!("uid:{}", signet_tests::current_uid())
    );
    assert_eq!(created["outcome"], "ok");
    let token = admin
        .iter()
        .find(|r| r["verb"] == "token.generate")
        .expect("a token.generate record");
    assert!(token["args"].get("token").is_none());
    // An unused join token is a secret: its value is in no record.
    let unused = server.join_token();
    let all = audit(&server, &["show", "--output", "json"]);
    assert!(stdout(&all).contains("token.generate"));
    assert!(
        !stdout(&all).contains(&unused),
        "a join token in the audit log"
    );
    // A refused change is recorded as refused.
    let refused = server.cli(&["entry", "delete", "--id", "no-such-entry"]);
    assert!(!refused.status.success());
    let tail = audit(&server, &["tail", "-n", "1"]);
    let line: serde_json::Value = serde_json::from_str(stdout(&tail).trim()).unwrap();
    assert_eq!(line["verb"], "entry.delete");
    assert!(line["outcome"]["refused"]["reason"]
        .as_str()
        .unwrap()
        .contains("NotFound"));
    let records: Vec<serde_json::Value> = {
        let all = audit(&server, &["show", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&all)).unwrap();
        v["records"].as_array().unwrap().clone()
    };

    // The filters.
    let by_id = audit(
        &server,
        &[
            "show",
            "--spiffe-id",
            &id,
            "--kind",
            "jwt_svid_issued",
            "--output",
            "json",
        ],
    );
    let by_id: serde_json::Value = serde_json::from_str(&stdout(&by_id)).unwrap();
    assert_eq!(by_id["records"].as_array().unwrap().len(), jwt.len());

    let ok = audit(&server, &["verify"]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(
        stdout(&ok).starts_with("audit chain intact"),
        "{}",
        stdout(&ok)
    );
    let n = records.len();
    assert!(n >= 3, "{n} records");

    server.stop();
    let broken = |out: &Output| {
        assert_eq!(out.status.code(), Some(1), "{}", stdout(out));
        stdout(out)
    };
    // An edited field.
    tamper(&server, "UPDATE audit_log SET record = replace(record, '\"outcome\":\"ok\"', '\"outcome\":\"no\"') WHERE seq = 1").await;
    assert!(broken(&audit(&server, &["verify"])).contains("record 1 was altered"));
    // Put back, then remove record 2.
    tamper(&server, "UPDATE audit_log SET record = replace(record, '\"outcome\":\"no\"', '\"outcome\":\"ok\"') WHERE seq = 1").await;
    assert!(audit(&server, &["verify"]).status.success());
    tamper(
        &server,
        "CREATE TABLE saved AS SELECT * FROM audit_log; DELETE FROM audit_log WHERE seq = 2",
    )
    .await;
    assert!(broken(&audit(&server, &["verify"])).contains("record 2 is missing"));
    // Two records swapped.
    tamper(
        &server,
        "DELETE FROM audit_log; INSERT INTO audit_log SELECT * FROM saved; \
        UPDATE audit_log SET seq = -1 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; \
        UPDATE audit_log SET seq = 3 WHERE seq = -1",
    )
    .await;
    assert!(broken(&audit(&server, &["verify"])).contains("record 2 was altered"));
    // The tail cut: the checkpoint written as the server stopped names a
    // record past the new end.
    tamper(
        &server,
        "DELETE FROM audit_log; INSERT INTO audit_log SELECT * FROM saved",
    )
    .await;
    assert!(audit(&server, &["verify"]).status.success());
    let file = server.data_dir.join("audit_checkpoints.jsonl");
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["seq"].as_u64().unwrap() as usize, n);
    tamper(&server, &format!("DELETE FROM audit_log WHERE seq = {n}")).await;
    assert!(broken(&audit(&server, &["verify"])).contains("the tail was cut"));

    // A consistent rewrite (record 1 changed, every hash recomputed, the
    // datastore's own checkpoints dropped) passes on the datastore alone;
    // the checkpoint file outside it catches it.
    tamper(
        &server,
        "DELETE FROM audit_log; INSERT INTO audit_log SELECT * FROM saved",
    )
    .await;
    rewrite_consistently(&server).await;
    tamper(&server, "DELETE FROM audit_checkpoints").await;
    assert!(audit(&server, &["verify"]).status.success());
    let out = audit(
        &server,
        &["verify", "--checkpoints", file.to_str().unwrap()],
    );
    assert!(
        broken(&out).contains("does not match checkpoint"),
        "{}",
        stdout(&out)
    );
}

/// Changes record 1 and recomputes every hash after it, as an attacker
/// with write access to the datastore would.
async fn rewrite_consistently(server: &TestServer) {
    let mut conn = SqliteConnectOptions::new()
        .filename(server.data_dir.join("datastore.sqlite3"))
        .connect()
        .await
        .unwrap();
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT seq, record FROM audit_log ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let mut prev = [0u8; 32];
    for (seq, record) in rows {
        let record = if seq == 1 {
            record.replace("\"outcome\":\"ok\"", "\"outcome\":\"no\"")
        } else {
            record
        };
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&prev);
        ctx.update(record.as_bytes());
        prev.copy_from_slice(ctx.finish().as_ref());
        let hex: String = prev.iter().map(|b| format!("{b:02x}")).collect();
        sqlx::query("UPDATE audit_log SET record = ?, hash = ? WHERE seq = ?")
            .bind(record)
            .bind(hex)
            .bind(seq)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
}
