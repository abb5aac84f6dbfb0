//! Authority transitions into the chain: this server's X.509 and JWT
//! authorities watched as the CA publishes them; each one that appears,
//! changes state (prepared, active, old), is tainted or leaves the bundle
//! is one record. Each server records its own authorities' transitions.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Auditor, Decision};
use crate::ca::{AuthorityKind, CertificateAuthority};

/// `(kind, id)` -> `(state, tainted)`.
type States = HashMap<(AuthorityKind, String), (&'static str, bool)>;

fn own(ca: &CertificateAuthority, server_id: &str) -> States {
    [AuthorityKind::X509, AuthorityKind::Jwt]
        .into_iter()
        .flat_map(|kind| ca.list(kind))
        .filter(|a| a.server_id == server_id)
        .map(|a| ((a.kind, a.id), (a.state.as_str(), a.tainted)))
        .collect()
}

/// The records that take `before` to `after`, in a stable order.
fn changes(before: &States, after: &States) -> Vec<Decision> {
    let record =
        |(kind, id): &(AuthorityKind, String), state: &str| Decision::AuthorityTransition {
            authority: kind.as_str().to_owned(),
            authority_id: id.clone(),
            state: state.to_owned(),
        };
    let mut out = Vec::new();
    let mut keys: Vec<_> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        match (before.get(key), after.get(key)) {
            (None, Some((state, tainted))) => {
                out.push(record(key, state));
                if *tainted {
                    out.push(record(key, "tainted"));
                }
            }
            (Some((was, was_tainted)), Some((state, tainted))) => {
                if was != state {
                    out.push(record(key, state));
                }
                if *tainted && !was_tainted {
                    out.push(record(key, "tainted"));
                }
            }
            (Some(_), None) => out.push(record(key, "removed")),
            (None, None) => {}
        }
    }
    out
}

/// Records transitions until the CA stops publishing.
pub async fn run(ca: Arc<CertificateAuthority>, audit: Auditor, server_id: String) {
    let mut published = ca.subscribe();
    let mut states = own(&ca, &server_id);
    while published.changed().await.is_ok() {
        let now = own(&ca, &server_id);
        for decision in changes(&states, &now) {
            // Errors are logged by the auditor.
            let _ = audit.append(decision).await;
        }
        states = now;
    }
}

/// Stops with the server: the CA's publisher outlives nothing.
pub fn start(
    ca: Arc<CertificateAuthority>,
    audit: Auditor,
    server_id: String,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            () = run(ca, audit, server_id) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(items: &[(&str, &'static str, bool)]) -> States {
        items
            .iter()
            .map(|(id, s, t)| ((AuthorityKind::X509, id.to_string()), (*s, *t)))
            .collect()
    }

    #[test]
    fn each_change_is_one_record() {
        let before = states(&[("a", "active", false), ("b", "prepared", false)]);
        let after = states(&[
            ("a", "old", true),
            ("b", "active", false),
            ("c", "prepared", false),
        ]);
        let got: Vec<String> = changes(&before, &after)
            .into_iter()
            .map(|d| match d {
                Decision::AuthorityTransition {
                    authority_id,
                    state,
                    ..
                } => format!("{authority_id}:{state}"),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(got, ["a:old", "a:tainted", "b:active", "c:prepared"]);
        let gone = changes(&after, &states(&[("b", "active", false)]));
        assert_eq!(gone.len(), 2, "a and c removed: {gone:?}");
        assert!(changes(&after, &after).is_empty());
    }
}
