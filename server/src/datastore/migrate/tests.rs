use std::sync::Arc;

use signet_core::{RegistrationEntry, SpiffeId};

use super::*;
use crate::ca::{AuthorityKind, AuthorityState};
use crate::datastore::{
    AgentRecord, AuthorityRecord, DataStore, DatastoreUrl, IssuedX509, PostgresSettings,
    RevokedKind, ServerRecord, SqliteDataStore, StoredCrl,
};
use crate::events::Change;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

/// A single-server store with something in every table.
async fn filled(path: &std::path::Path) -> Arc<dyn DataStore> {
    let ds: Arc<dyn DataStore> = Arc::new(SqliteDataStore::open(path).await.unwrap());
    ds.register_server(ServerRecord {
        id: "s1".into(),
        hostname: "h".into(),
        address: "127.0.0.1:8081".into(),
        started_at: 5,
        last_seen: 6,
    })
    .await
    .unwrap();
    let authority = |kind, id: &str, state| AuthorityRecord {
        kind,
        id: id.into(),
        server_id: "s1".into(),
        state,
        tainted: false,
        not_before: 1,
        not_after: 9_999_999_999,
        certificate: (kind == AuthorityKind::X509).then(|| vec![0x30, 0x01]),
        public_key: (kind == AuthorityKind::Jwt).then(|| "{}".to_owned()),
        upstream_root: None,
        upstream_chain: None,
    };
    ds.save_authorities(
        "s1",
        vec![
            authority(AuthorityKind::X509, "ca1", AuthorityState::Active),
            authority(AuthorityKind::X509, "ca0", AuthorityState::Old),
            authority(AuthorityKind::Jwt, "k1", AuthorityState::Active),
        ],
        vec![],
    )
    .await
    .unwrap();
    ds.taint_authority(AuthorityKind::X509, "ca0")
        .await
        .unwrap();
    ds.create_join_token("tok", 9_999_999_999).await.unwrap();
    let agent = AgentRecord {
        spiffe_id: id("spiffe://example.org/signet/agent/x509pop/h"),
        attestation_type: "x509pop".into(),
        serial: "0a".into(),
        expires_at: 50,
        banned: false,
        attested_at: 10,
        selectors: vec![],
    };
    ds.attest_agent(agent.clone()).await.unwrap();
    for n in 0..25 {
        ds.create_entry(
            RegistrationEntry {
                id: format!("e{n}"),
                spiffe_id: id(&format!("spiffe://example.org/w{n}")),
                parent_id: agent.spiffe_id.clone(),
                selectors: vec![signet_core::Selector::parse("unix:uid:1").unwrap()],
                x509_svid_ttl: None,
                jwt_svid_ttl: None,
                dns_names: vec![],
                hint: String::new(),
                admin: n == 3,
                downstream: false,
                revision: 0,
                federates_with: vec![],
            },
            n,
        )
        .await
        .unwrap();
    }
    ds.record_x509_many(vec![IssuedX509 {
        serial: "ab".into(),
        spiffe_id: id("spiffe://example.org/w1"),
        authority_id: "ca1".into(),
        expires_at: 9_999_999_999,
        audit: None,
    }])
    .await
    .unwrap();
    ds.record_jwt("j1", &id("spiffe://example.org/w1"), "k1", 9_999_999_999)
        .await
        .unwrap();
    ds.revoke(RevokedKind::X509, "ab", "lost", 100)
        .await
        .unwrap();
    ds.save_crls(
        "s1",
        vec![StoredCrl {
            authority_id: "ca1".into(),
            server_id: "s1".into(),
            der: vec![0x30, 0x02],
        }],
    )
    .await
    .unwrap();
    ds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_install_moves_whole_and_a_full_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datastore.sqlite3");
    let old = filled(&path).await;
    let before = (
        old.list_entries(&Default::default()).await.unwrap(),
        old.list_agents().await.unwrap(),
        old.load_authorities().await.unwrap(),
        old.revocations(0).await.unwrap(),
        old.crls().await.unwrap(),
        old.list_servers().await.unwrap(),
        old.events_after(0, 1000).await.unwrap(),
    );
    old.close().await;
    let url = tokio::task::spawn_blocking(signet_tests::postgres::fresh_database)
        .await
        .unwrap();
    let from = DatastoreUrl::Sqlite(path.clone());
    let to: DatastoreUrl = url.parse().unwrap();
    let settings = PostgresSettings::default();
    let done = run(&from, &to, &settings).await.unwrap();
    assert_eq!(done.rows.get("entries"), Some(&25));
    assert_eq!(done.rows.get("authorities"), Some(&3));
    assert_eq!(done.revision, before.6.last().unwrap().revision as i64);

    let new = crate::datastore::open(&to, &settings).await.unwrap();
    assert_eq!(
        new.list_entries(&Default::default()).await.unwrap(),
        before.0
    );
    assert_eq!(new.list_agents().await.unwrap(), before.1);
    let authorities = new.load_authorities().await.unwrap();
    assert_eq!(authorities.authorities, before.2.authorities);
    assert_eq!(authorities.sequence, before.2.sequence);
    assert_eq!(new.revocations(0).await.unwrap(), before.3);
    assert_eq!(new.crls().await.unwrap(), before.4);
    assert_eq!(new.list_servers().await.unwrap(), before.5);
    assert_eq!(new.events_after(0, 1000).await.unwrap(), before.6);
    // The join token still attests once; issued JWTs can still be revoked;
    // the log goes on from where it stood.
    assert_eq!(
        new.revoke(RevokedKind::Jwt, "j1", "x", 100)
            .await
            .unwrap()
            .authority_id,
        "k1"
    );
    let next = new.append_events(vec![Change::CrlsChanged]).await.unwrap();
    assert_eq!(next as i64, done.revision + 2);

    // Now the target holds data: a second migration is refused, untouched.
    let again = run(&from, &to, &settings).await.unwrap_err();
    assert!(
        matches!(&again, DataStoreError::FailedPrecondition(m) if m.contains("not empty")),
        "{again}"
    );
    assert_eq!(new.count_entries().await.unwrap(), 25);
    // And what is not SQLite to PostgreSQL is refused by name.
    let wrong = run(&to, &from, &settings).await.unwrap_err();
    assert!(wrong
        .to_string()
        .contains("--from must name the SQLite file"));
}
