//! Anomaly sightings: recorded once (the first sighting's time kept),
//! read back per kind and subject, by another handle too.

use super::Opener;
use crate::datastore::Sighting;

fn s(subject: &str, value: &str, first_seen: i64) -> Sighting {
    Sighting {
        subject: subject.into(),
        value: value.into(),
        first_seen,
    }
}

pub(crate) async fn sightings_keep_their_first_time_and_are_read_per_subject(o: &dyn Opener) {
    let ds = o.open().await;
    ds.add_sightings(
        "new_agent",
        vec![s("w1", "a1", 100), s("w1", "a2", 200), s("w2", "a1", 300)],
    )
    .await
    .unwrap();
    // Seen again later: the first time stays.
    ds.add_sightings("new_agent", vec![s("w1", "a1", 999)])
        .await
        .unwrap();
    ds.add_sightings("new_audience", vec![s("w1", "db", 50)])
        .await
        .unwrap();
    let other = o.open().await;
    let mut got = other
        .sightings("new_agent", &["w1".into(), "w3".into()])
        .await
        .unwrap();
    got.sort_by(|a, b| a.value.cmp(&b.value));
    assert_eq!(got, vec![s("w1", "a1", 100), s("w1", "a2", 200)]);
    assert!(other.sightings("new_agent", &[]).await.unwrap().is_empty());
}
