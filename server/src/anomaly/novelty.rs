//! `new_source_address`, `new_audience`, `new_agent`: a value never seen
//! for a subject (an address for an agent, an audience or an agent for a
//! SPIFFE ID). What was seen is kept in the datastore, so a group of
//! servers and a restarted one know it; each server holds what it looked
//! up. A subject's first sighting is learned, not found, and so is any new
//! value within `learning_period` of it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use signet_core::SpiffeId;

use super::{Finding, Kind};
use crate::datastore::{DataStore, Result, Sighting};

/// A value seen for a subject.
#[derive(Debug, Clone)]
pub struct Seen {
    pub kind: Kind,
    pub subject: String,
    pub value: String,
    /// The agent to act on should it be a finding.
    pub agent: Option<SpiffeId>,
}

#[derive(Debug, Default)]
struct Known {
    /// When the subject was first seen (unix seconds); `None`: never.
    since: Option<i64>,
    values: HashSet<String>,
}

/// Subjects held in memory at most; beyond it the memory starts again
/// (what was seen stays in the datastore).
const MAX_SUBJECTS: usize = 500_000;

#[derive(Debug, Default)]
pub struct Sightings {
    known: HashMap<(Kind, String), Known>,
}

/// Whether a new value for a subject first seen at `since` is a finding.
pub fn is_finding(since: Option<i64>, now: i64, learning: Duration) -> bool {
    let learning = i64::try_from(learning.as_secs()).unwrap_or(i64::MAX);
    since.is_some_and(|s| now.saturating_sub(s) >= learning)
}

impl Sightings {
    /// Remembers `batch` (here and in the datastore); the findings among it.
    pub async fn check(
        &mut self,
        ds: &dyn DataStore,
        batch: Vec<Seen>,
        now: i64,
        learning: Duration,
    ) -> Result<Vec<Finding>> {
        let fresh: Vec<Seen> = batch
            .into_iter()
            .filter(|s| {
                !self
                    .known
                    .get(&(s.kind, s.subject.clone()))
                    .is_some_and(|k| k.values.contains(&s.value))
            })
            .collect();
        if fresh.is_empty() {
            return Ok(vec![]);
        }
        if self.known.len() > MAX_SUBJECTS {
            self.known.clear();
        }
        self.load(ds, &fresh).await?;
        let mut findings = Vec::new();
        let mut rows: HashMap<Kind, Vec<Sighting>> = HashMap::new();
        for s in fresh {
            let known = self.known.entry((s.kind, s.subject.clone())).or_default();
            if known.values.contains(&s.value) {
                continue;
            }
            if is_finding(known.since, now, learning) {
                findings.push(Finding {
                    kind: s.kind,
                    detail: detail(s.kind, &s.value, &known.values),
                    subject: s.subject.clone(),
                    agent: s.agent,
                });
            }
            known.since = Some(known.since.unwrap_or(now));
            known.values.insert(s.value.clone());
            rows.entry(s.kind).or_default().push(Sighting {
                subject: s.subject,
                value: s.value,
                first_seen: now,
            });
        }
        for (kind, rows) in rows {
            ds.add_sightings(kind.name(), rows).await?;
        }
        Ok(findings)
    }

    /// Loads what the datastore knows of the subjects not in memory.
    async fn load(&mut self, ds: &dyn DataStore, fresh: &[Seen]) -> Result<()> {
        let mut wanted: HashMap<Kind, HashSet<String>> = HashMap::new();
        for s in fresh {
            if !self.known.contains_key(&(s.kind, s.subject.clone())) {
                wanted.entry(s.kind).or_default().insert(s.subject.clone());
            }
        }
        for (kind, subjects) in wanted {
            let subjects: Vec<String> = subjects.into_iter().collect();
            for seen in ds.sightings(kind.name(), &subjects).await? {
                let k = self.known.entry((kind, seen.subject)).or_default();
                let first = seen.first_seen;
                k.since = Some(k.since.map_or(first, |s| s.min(first)));
                k.values.insert(seen.value);
            }
            for subject in subjects {
                self.known.entry((kind, subject)).or_default();
            }
        }
        Ok(())
    }
}

/// The finding's text: what is new, and (some of) what was known.
fn detail(kind: Kind, value: &str, known: &HashSet<String>) -> String {
    let mut before: Vec<&str> = known.iter().map(String::as_str).collect();
    before.sort_unstable();
    let shown = before.len().min(3);
    let more = before.len() - shown;
    let mut list = before.get(..shown).unwrap_or_default().join(", ");
    if more > 0 {
        list.push_str(&format!(" and {more} more"));
    }
    match kind {
        Kind::NewSourceAddress => format!("attested from {value}; before only from {list}"),
        Kind::NewAudience => format!("JWT-SVID for audience {value:?}; before only for {list}"),
        Kind::NewAgent => format!("signed for agent {value}; before only on {list}"),
        _ => format!("{value} (before: {list})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_sighting_and_the_learning_period_are_not_findings() {
        let hour = Duration::from_secs(3600);
        assert!(!is_finding(None, 10_000, hour));
        assert!(!is_finding(Some(9_000), 10_000, hour));
        assert!(is_finding(Some(6_400), 10_000, hour));
        assert!(is_finding(Some(10_000), 10_000, Duration::ZERO));
    }

    #[test]
    fn details_name_the_new_value_and_some_known_ones() {
        let known: HashSet<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            detail(Kind::NewAudience, "e", &known),
            "JWT-SVID for audience \"e\"; before only for a, b, c and 1 more"
        );
    }
}
