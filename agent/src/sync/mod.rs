//! The Sync stream from the server: a snapshot of the entries this agent is
//! authorized for, the bundle, revocations, CRLs and tainted authorities,
//! then deltas as they happen. Each message goes to the cache manager; bundle
//! changes also update the bundle the TLS verifier trusts and the copy on
//! disk; taints also reach the agent SVID renewal. Reconnects with backoff
//! and jitter from the last revision seen. A `PermissionDenied` end means the
//! agent was banned or evicted: everything is dropped and it never retries.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use signet_core::bundle::{Bundle, JwtAuthority};
use signet_core::clock::from_unix_seconds;
use signet_core::jwt::{Jwk, JwtPublicKey};
use signet_core::{Clock, RegistrationEntry, Selector, SpiffeId, TrustDomain};
use signet_proto::node::revoked_credential::Credential;
use signet_proto::node::{self, Entry, RevokedCredential, SyncRequest, SyncResponse};
use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;
use crate::cache::{Revocations, SyncUpdate, Tainted};
use crate::health::{measure_skew, Health, Status};
use crate::node_client::NodeConnector;
use crate::storage::Storage;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Connect(#[from] crate::node_client::NodeClientError),
    #[error("sync stream: {:?}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("the cache manager stopped")]
    Closed,
}

pub struct SyncTask {
    pub connector: Arc<NodeConnector>,
    pub updates: mpsc::Sender<SyncUpdate>,
    pub bundle: watch::Sender<Arc<Vec<Vec<u8>>>>,
    /// Tainted X.509 authority ids, for the agent SVID renewal.
    pub tainted_x509: watch::Sender<BTreeSet<String>>,
    pub storage: Storage,
    pub health: Health,
    pub clock: Arc<dyn Clock>,
    /// Resume from here (the revision of the cache loaded from disk).
    pub start_revision: u64,
}

/// Reconnect delays: 500 ms doubling to a 30 s cap, reset by any message.
pub fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
}

impl SyncTask {
    /// Streams forever, reconnecting after errors or a closed stream; parks
    /// for good once the server has cut the agent off.
    pub async fn run(self) {
        let mut backoff = reconnect_backoff();
        let mut revision = self.start_revision;
        loop {
            match self.stream_once(&mut revision, &mut backoff).await {
                Ok(()) => tracing::warn!("sync stream closed by the server; reconnecting"),
                Err(SyncError::Closed) => return,
                Err(SyncError::Status(s)) if s.code() == tonic::Code::PermissionDenied => {
                    self.cut_off(s.message()).await;
                    return std::future::pending().await;
                }
                Err(e) => tracing::warn!(error = %e, revision, "sync stream failed; reconnecting"),
            }
            self.connector.reset().await;
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Banned or evicted: drop every SVID, forget the dead identity so a
    /// restart does not try it again, and say what to do.
    async fn cut_off(&self, server_said: &str) {
        let (status, message) = cut_off_report(server_said);
        tracing::error!(server_said, "{message}");
        self.health.set_status(status, message.clone());
        let _ = self
            .updates
            .send(SyncUpdate {
                cut_off: Some(message),
                ..Default::default()
            })
            .await;
        if let Err(e) = self.storage.forget_identity() {
            tracing::error!(error = %e, "cannot remove the agent identity from the data dir");
        }
        self.connector.reset().await;
    }

    async fn stream_once(
        &self,
        revision: &mut u64,
        backoff: &mut Backoff,
    ) -> Result<(), SyncError> {
        let mut client = self.connector.client().await?;
        let mut stream = client
            .sync(SyncRequest {
                since_revision: *revision,
            })
            .await?
            .into_inner();
        // The parts of a snapshot received so far.
        let mut partial: Option<SyncUpdate> = None;
        while let Some(message) = stream.message().await? {
            backoff.reset();
            self.health.mark_reached_server();
            if let Some(skew) = measure_skew(message.server_time_ms, self.clock.now()) {
                self.health.record_skew(skew);
            }
            let continues = message.snapshot && message.snapshot_continues;
            let mut part = self.parse(message);
            if continues {
                // Issuing for these entries need not wait for the rest.
                self.updates
                    .send(part.split_preview())
                    .await
                    .map_err(|_| SyncError::Closed)?;
            }
            let update = match partial.take() {
                Some(mut so_far) => {
                    so_far.absorb(part);
                    so_far
                }
                None => part,
            };
            if continues {
                partial = Some(update);
                continue;
            }
            // Only a whole snapshot moves the resume point.
            *revision = update.revision;
            if let Some(bundle) = &update.bundle {
                self.bundle_changed(bundle);
            }
            if let Some(tainted) = &update.tainted {
                self.tainted_x509.send_if_modified(|t| {
                    let changed = *t != tainted.x509;
                    t.clone_from(&tainted.x509);
                    changed
                });
            }
            self.updates
                .send(update)
                .await
                .map_err(|_| SyncError::Closed)?;
        }
        Ok(())
    }

    fn parse(&self, message: SyncResponse) -> SyncUpdate {
        tracing::debug!(
            revision = message.revision,
            snapshot = message.snapshot,
            entries = message.entries.len(),
            removed = message.removed_entry_ids.len(),
            revocations = message.revocations.len(),
            "sync message"
        );
        let entries = message
            .entries
            .into_iter()
            .filter_map(|e| {
                let id = e.id.clone();
                entry_from_proto(e)
                    .map_err(
                        |error| tracing::warn!(entry_id = id, %error, "ignoring malformed entry"),
                    )
                    .ok()
            })
            .collect();
        let bundle = message.bundle.and_then(|b| match TrustDomain::new(&b.trust_domain) {
            Ok(trust_domain) => Some(Bundle {
                trust_domain,
                jwt_authorities: jwt_authorities_from_proto(&b.jwt_authorities),
                x509_authorities: b.x509_authorities,
                sequence: b.sequence,
            }),
            Err(error) => {
                tracing::warn!(trust_domain = b.trust_domain, %error, "ignoring a bundle without a valid trust domain");
                None
            }
        });
        SyncUpdate {
            snapshot: message.snapshot,
            preview: false,
            previewed: vec![],
            entries,
            removed_entry_ids: message.removed_entry_ids,
            bundle,
            revision: message.revision,
            revocations: revocations_from_proto(&message.revocations),
            crls: message.crls.map(|c| c.crls),
            tainted: message.tainted.map(|t| Tainted {
                x509: t
                    .x509
                    .into_iter()
                    .map(|id| id.to_ascii_lowercase())
                    .collect(),
                jwt_kids: t.jwt_kids.into_iter().collect(),
            }),
            cut_off: None,
        }
    }

    fn bundle_changed(&self, bundle: &Bundle) {
        let bundle = bundle.x509_authorities.as_slice();
        if bundle.is_empty() {
            return;
        }
        let changed = self.bundle.send_if_modified(|current| {
            if current.as_slice() == bundle {
                false
            } else {
                *current = Arc::new(bundle.to_vec());
                true
            }
        });
        if changed {
            tracing::info!(authorities = bundle.len(), "trust bundle updated");
            if let Err(e) = self.storage.save_bundle(bundle) {
                tracing::error!(error = %e, "cannot persist trust bundle");
            }
        }
    }
}

/// What to report when the server refuses the agent with `PermissionDenied`.
pub fn cut_off_report(server_said: &str) -> (Status, String) {
    if server_said.to_ascii_lowercase().contains("banned") {
        (
            Status::Banned,
            format!(
                "agent banned by the server ({server_said}): every SVID was dropped and the Workload API serves nothing; the agent does not retry with this identity; to bring the host back, attest it as a new agent: restart with --join-token NEW_TOKEN"
            ),
        )
    } else {
        (
            Status::Evicted,
            format!(
                "agent evicted by the server ({server_said}): every SVID was dropped; a new join token is needed: restart the agent with --join-token TOKEN"
            ),
        )
    }
}

/// Revocations on the wire, serials normalized to lowercase hex.
pub fn revocations_from_proto(list: &[RevokedCredential]) -> Revocations {
    let mut out = Revocations::default();
    for r in list {
        let expires = from_unix_seconds(r.expires_at);
        match &r.credential {
            Some(Credential::X509Serial(serial)) => {
                let serial: String = serial
                    .chars()
                    .filter(|c| *c != ':')
                    .collect::<String>()
                    .to_ascii_lowercase();
                let serial = serial.trim_start_matches('0').to_owned();
                tracing::info!(serial, reason = r.reason, "X.509-SVID revoked");
                out.x509_serials.insert(serial, expires);
            }
            Some(Credential::JwtId(jti)) => {
                tracing::info!(jti, reason = r.reason, "JWT-SVID revoked");
                out.jwt_ids.insert(jti.clone(), expires);
            }
            None => {}
        }
    }
    out
}

/// Parses the bundle's JWT keys once; a key that does not parse is logged
/// and skipped so one bad JWK cannot take the others down.
pub fn jwt_authorities_from_proto(authorities: &[node::JwtAuthority]) -> Vec<JwtAuthority> {
    authorities
        .iter()
        .filter_map(|a| match jwt_authority_from_proto(a) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::warn!(kid = a.kid, %error, "ignoring malformed JWT authority");
                None
            }
        })
        .collect()
}

fn jwt_authority_from_proto(a: &node::JwtAuthority) -> Result<JwtAuthority, String> {
    let jwk: Jwk = serde_json::from_str(&a.jwk).map_err(|e| format!("not a JWK: {e}"))?;
    let kid = match (a.kid.as_str(), jwk.kid.as_deref()) {
        ("", None | Some("")) => return Err("no kid".into()),
        ("", Some(k)) => k.to_owned(),
        (k, None) => k.to_owned(),
        (k, Some(j)) if k == j => k.to_owned(),
        (k, Some(j)) => return Err(format!("kid {k:?} does not match the JWK's kid {j:?}")),
    };
    if let Some(use_) = jwk.use_.as_deref().filter(|u| *u != "jwt-svid") {
        return Err(format!("JWK use is {use_:?}, not \"jwt-svid\""));
    }
    let public_key = JwtPublicKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(JwtAuthority {
        kid,
        jwk,
        public_key,
        expires_at: a.expires_at,
    })
}

/// Parses an entry off the wire into the domain type (edges parse once).
pub fn entry_from_proto(e: Entry) -> Result<RegistrationEntry, String> {
    let spiffe_id = SpiffeId::parse_with_path(&e.spiffe_id).map_err(|x| x.to_string())?;
    let parent_id = SpiffeId::parse(&e.parent_id).map_err(|x| x.to_string())?;
    let selectors = e
        .selectors
        .iter()
        .map(|s| Selector::new(&s.r#type, &s.value))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|x| x.to_string())?;
    let ttl = |secs: u32| (secs > 0).then(|| Duration::from_secs(u64::from(secs)));
    Ok(RegistrationEntry {
        id: e.id,
        spiffe_id,
        parent_id,
        selectors: signet_core::entry::normalize_selectors(selectors),
        x509_svid_ttl: ttl(e.x509_svid_ttl),
        jwt_svid_ttl: ttl(e.jwt_svid_ttl),
        dns_names: e.dns_names,
        hint: e.hint,
        admin: e.admin,
        downstream: e.downstream,
        revision: e.revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_proto::node::Selector as ProtoSelector;

    fn wire(spiffe_id: &str, selector: (&str, &str)) -> Entry {
        Entry {
            id: "e1".into(),
            spiffe_id: spiffe_id.into(),
            parent_id: "spiffe://example.org/signet/agent/join_token/t".into(),
            selectors: vec![
                ProtoSelector {
                    r#type: selector.0.into(),
                    value: selector.1.into(),
                },
                ProtoSelector {
                    r#type: "unix".into(),
                    value: "gid:1".into(),
                },
            ],
            x509_svid_ttl: 60,
            ..Default::default()
        }
    }

    #[test]
    fn wire_entry_becomes_a_registration_entry() {
        let e = entry_from_proto(wire("spiffe://example.org/me", ("unix", "uid:1000"))).unwrap();
        assert_eq!(e.spiffe_id.to_string(), "spiffe://example.org/me");
        assert_eq!(e.x509_svid_ttl, Some(Duration::from_secs(60)));
        assert_eq!(e.jwt_svid_ttl, None);
        let sel: Vec<String> = e.selectors.iter().map(|s| s.to_string()).collect();
        assert_eq!(sel, vec!["unix:gid:1", "unix:uid:1000"]);
    }

    #[test]
    fn bad_jwt_authorities_are_skipped_not_fatal() {
        let (signer, _) = signet_core::jwt::JwtSigner::generate("k1".into()).unwrap();
        let good = node::JwtAuthority {
            kid: "k1".into(),
            jwk: serde_json::to_string(&signer.jwk()).unwrap(),
            expires_at: 0,
        };
        let garbage = node::JwtAuthority {
            kid: "k2".into(),
            jwk: "{not json".into(),
            expires_at: 0,
        };
        let wrong_kid = node::JwtAuthority {
            kid: "k3".into(),
            ..good.clone()
        };
        let bad_curve = node::JwtAuthority {
            kid: "k4".into(),
            jwk: r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA","kid":"k4"}"#.into(),
            expires_at: 0,
        };
        let keys = jwt_authorities_from_proto(&[garbage, good, wrong_kid, bad_curve]);
        let keys: Vec<(String, _)> = keys.into_iter().map(|a| (a.kid, a.public_key)).collect();
        assert_eq!(keys, vec![("k1".to_string(), signer.public_key())]);
    }

    #[tokio::test(start_paused = true)]
    async fn reconnects_back_off_with_jitter_to_a_30s_cap_and_start_over_after_a_message() {
        let mut b = reconnect_backoff();
        let steps: Vec<Duration> = (0..10).map(|_| b.next_delay_with(1.0)).collect();
        assert_eq!(steps[0], Duration::from_millis(500));
        assert_eq!(steps[1], Duration::from_secs(1));
        assert!(steps.windows(2).all(|w| w[1] >= w[0]), "never shrinks");
        assert_eq!(steps[9], Duration::from_secs(30), "capped");
        let jittered = b.next_delay();
        assert!(jittered >= Duration::from_secs(15) && jittered <= Duration::from_secs(30));
        let start = tokio::time::Instant::now();
        tokio::time::sleep(jittered).await;
        // Paused time moves in whole milliseconds.
        assert!(start.elapsed() >= jittered);
        assert!(start.elapsed() < jittered + Duration::from_millis(1));
        b.reset(); // what every sync message does
        assert_eq!(b.next_delay_with(1.0), Duration::from_millis(500));
    }

    #[test]
    fn banned_and_evicted_are_told_apart() {
        let (status, message) = cut_off_report("agent is banned");
        assert_eq!(status, Status::Banned);
        assert!(message.contains("banned"), "{message}");
        let (status, message) = cut_off_report("agent spiffe://x/y not found");
        assert_eq!(status, Status::Evicted);
        assert!(message.contains("new join token"), "{message}");
    }

    #[test]
    fn wire_revocations_are_normalized() {
        let list = [
            RevokedCredential {
                credential: Some(Credential::X509Serial("00:AB:01".into())),
                expires_at: 2_000_000_000,
                reason: "leak".into(),
            },
            RevokedCredential {
                credential: Some(Credential::JwtId("j1".into())),
                expires_at: 2_000_000_000,
                reason: String::new(),
            },
            RevokedCredential::default(),
        ];
        let r = revocations_from_proto(&list);
        let now = from_unix_seconds(1_900_000_000);
        assert!(r.is_serial_revoked("ab01", now));
        assert!(r.is_serial_revoked("00ab01", now));
        assert!(r.is_jti_revoked("j1", now));
        assert!(!r.is_jti_revoked("j1", from_unix_seconds(2_000_000_000)));
    }

    #[test]
    fn malformed_wire_entries_are_refused() {
        assert!(entry_from_proto(wire("spiffe://example.org", ("unix", "uid:1"))).is_err());
        assert!(entry_from_proto(wire("spiffe://example.org/me", ("", "uid:1"))).is_err());
    }
}
