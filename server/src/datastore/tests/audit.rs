//! The audit chain: appends from many writers at once (the servers of a
//! group) make one unbroken chain, issued serials carry their records in.

use std::sync::Arc;

use super::Opener;
use crate::audit::{chain, Verifier};
use crate::datastore::IssuedX509;

pub(crate) async fn concurrent_appends_make_one_chain_that_verifies(o: &dyn Opener) {
    let ds = o.open().await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let ds = Arc::clone(&ds);
            tokio::spawn(async move {
                for b in 0..5 {
                    let records = (0..10)
                        .map(|i| format!("{{\"w\":{w},\"b\":{b},\"i\":{i}}}"))
                        .collect();
                    ds.append_audit(records).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    // Serials and their audit records commit together.
    ds.record_x509_many(vec![IssuedX509 {
        serial: "0abc".into(),
        spiffe_id: super::id("spiffe://example.org/w"),
        authority_id: "a".into(),
        expires_at: 9_999_999_999,
        audit: Some("{\"issued\":\"0abc\"}".into()),
    }])
    .await
    .unwrap();
    let rows = ds.audit_records(1, 10_000).await.unwrap();
    assert_eq!(rows.len(), 401);
    let mut v = Verifier::new(0, chain::GENESIS, []);
    for r in &rows {
        v.feed(r).unwrap();
    }
    let head = ds.audit_head().await.unwrap().unwrap();
    assert_eq!(head.seq, 401);
    assert_eq!(head.record, "{\"issued\":\"0abc\"}");
    assert_eq!(chain::to_hex(&v.head().1), head.hash);
    assert_eq!(ds.audit_records(400, 10).await.unwrap().len(), 2);
}
