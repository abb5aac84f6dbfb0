//! Per-credential revocation: the revoked X.509 serials published as one DER
//! CRL per issuing authority, and the revoked jtis. Only the server holding
//! an authority's key can sign its CRL, so each server signs its own
//! authorities' CRLs and stores them in the datastore; every server serves
//! the union to its agents ("one CRL per issuing CA, whoever's").
//!
//! One task (`Keeper`) owns the signing state; it rebuilds when a
//! revocation, a CRL or the authorities change anywhere (it follows the
//! change bus) or when asked, and publishes a snapshot readers take without
//! a lock.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_core::clock::{from_unix_seconds, unix_seconds};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::ca::{AuthorityKind, CaError, CertificateAuthority};
use crate::datastore::{DataStore, DataStoreError, RevokedKind, StoredCrl};
use crate::events::{Change, ChangeBus, Event};

#[derive(Debug, Clone, thiserror::Error)]
pub enum RevocationError {
    #[error(transparent)]
    DataStore(#[from] DataStoreError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("the revocation keeper has stopped (shutting down)")]
    Stopped,
}

/// What readers see.
#[derive(Debug, Default)]
struct Published {
    /// Every server's CRLs, DER, one per authority with revoked serials.
    crls: Vec<Vec<u8>>,
    /// Revoked X.509 serials (lowercase hex), for agent authentication.
    x509: HashSet<String>,
    /// Events up to this revision are reflected.
    revision: u64,
}

/// How long a Sync stream waits for the CRLs an event speaks of.
const CATCH_UP: Duration = Duration::from_secs(2);
/// How long to wait before rebuilding again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// The handle: cheap reads of the published state, rebuilds on request.
#[derive(Clone)]
pub struct Revocations {
    published: watch::Receiver<Arc<Published>>,
    requests: mpsc::Sender<oneshot::Sender<Result<bool, RevocationError>>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("revision", &self.published.borrow().revision)
            .finish_non_exhaustive()
    }
}

/// Lowercase hex without separators or leading zero bytes beyond one.
pub fn normalize_serial(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    })
}

impl Revocations {
    /// Builds the first state (failing start-up if it cannot) and starts
    /// the keeper, which follows `bus` and the CA's authorities.
    pub async fn start(
        ds: Arc<dyn DataStore>,
        ca: Arc<CertificateAuthority>,
        bus: &ChangeBus,
        server_id: String,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), RevocationError> {
        let (events, _) = bus.subscribe();
        let (publish, published) = watch::channel(Arc::new(Published::default()));
        let mut keeper = Keeper {
            ds,
            ca,
            server_id,
            signed: None,
            number: 0,
            publish,
        };
        keeper.rebuild().await?;
        let (requests, queue) = mpsc::channel(16);
        let task = tokio::spawn(keeper.run(queue, events));
        Ok((
            Self {
                published,
                requests,
            },
            task,
        ))
    }

    /// Every server's current CRLs, DER.
    pub fn crls(&self) -> Vec<Vec<u8>> {
        self.published.borrow().crls.clone()
    }

    /// Whether the X.509-SVID with this serial (lowercase hex) is revoked.
    pub fn is_x509_revoked(&self, serial_hex: &str) -> bool {
        self.published.borrow().x509.contains(serial_hex)
    }

    /// Rebuilds now (after a revocation made here); whether the CRLs
    /// changed.
    pub async fn refresh(&self) -> Result<bool, RevocationError> {
        let (reply, outcome) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| RevocationError::Stopped)?;
        outcome.await.map_err(|_| RevocationError::Stopped)?
    }

    /// Waits (a little, at most) until the published CRLs reflect the
    /// event log up to `revision`.
    pub async fn caught_up(&self, revision: u64) {
        let mut watched = self.published.clone();
        let _ = tokio::time::timeout(CATCH_UP, watched.wait_for(|p| p.revision >= revision)).await;
    }
}

/// Revoked serials of one authority, with their revocation times; and the
/// latest expiry among them (the CRL's nextUpdate).
type Inputs = BTreeMap<String, (Vec<(String, i64)>, i64)>;

struct Keeper {
    ds: Arc<dyn DataStore>,
    ca: Arc<CertificateAuthority>,
    server_id: String,
    /// What this server's stored CRLs were signed from.
    signed: Option<Inputs>,
    number: u64,
    publish: watch::Sender<Arc<Published>>,
}

fn concerns_crls(event: &Event) -> bool {
    matches!(
        &event.change,
        Change::Revoked(r) if r.kind == RevokedKind::X509
    ) || matches!(event.change, Change::CrlsChanged)
}

impl Keeper {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<oneshot::Sender<Result<bool, RevocationError>>>,
        mut events: broadcast::Receiver<Arc<Event>>,
    ) {
        let mut authorities = self.ca.subscribe();
        let mut failed = false;
        loop {
            let retry = async {
                if failed {
                    tokio::time::sleep(RETRY).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let due = tokio::select! {
                request = requests.recv() => {
                    let Some(reply) = request else { return };
                    let result = self.rebuild().await;
                    failed = result.is_err();
                    let _ = reply.send(result);
                    continue;
                }
                changed = authorities.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    true
                }
                event = events.recv() => match event {
                    Ok(e) => concerns_crls(&e) && e.revision > self.publish.borrow().revision,
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = retry => true,
            };
            if due {
                match self.rebuild().await {
                    Ok(_) => failed = false,
                    Err(e) => {
                        if !failed {
                            tracing::warn!(error = %e, "rebuilding the CRLs failed; retrying");
                        }
                        failed = true;
                    }
                }
            }
        }
    }

    /// Signs this server's CRLs again when what they list changed (and
    /// stores them, with their event), then publishes every server's.
    /// Whether the published CRLs changed.
    async fn rebuild(&mut self) -> Result<bool, RevocationError> {
        let now = self.ca.now();
        let mut revision = self.ds.current_revision().await?;
        let all = self.ds.revocations(unix_seconds(now)).await?;
        let ours: HashSet<String> = self
            .ca
            .own(AuthorityKind::X509)
            .into_iter()
            .map(|a| a.id)
            .collect();
        let mut inputs = Inputs::new();
        for r in all.iter().filter(|r| r.kind == RevokedKind::X509) {
            if ours.contains(&r.authority_id) {
                let (serials, until) = inputs.entry(r.authority_id.clone()).or_default();
                serials.push((r.id.clone(), r.revoked_at));
                *until = (*until).max(r.expires_at);
            }
        }
        let stored = self.ds.crls().await?;
        // At start, nothing to list and nothing stored: nothing to sign.
        if self.signed.is_none()
            && inputs.is_empty()
            && !stored.iter().any(|c| c.server_id == self.server_id)
        {
            self.signed = Some(Inputs::new());
        }
        let stored = if self.signed.as_ref() != Some(&inputs) {
            let crls = self.sign(&inputs, now)?;
            self.ds.save_crls(&self.server_id, crls).await?;
            self.signed = Some(inputs);
            revision = revision.max(self.ds.current_revision().await?);
            self.ds.crls().await?
        } else {
            stored
        };
        // Every server's, while their authority is in the bundle.
        let bundle: HashSet<String> = self
            .ca
            .list(AuthorityKind::X509)
            .into_iter()
            .map(|a| a.id)
            .collect();
        let crls: Vec<Vec<u8>> = stored
            .into_iter()
            .filter(|c| bundle.contains(&c.authority_id))
            .map(|c| c.der)
            .collect();
        let x509 = all
            .iter()
            .filter(|r| r.kind == RevokedKind::X509)
            .map(|r| r.id.clone())
            .collect();
        let changed = self.publish.borrow().crls != crls;
        self.publish.send_replace(Arc::new(Published {
            crls,
            x509,
            revision,
        }));
        Ok(changed)
    }

    fn sign(&mut self, inputs: &Inputs, now: SystemTime) -> Result<Vec<StoredCrl>, CaError> {
        // Increasing across restarts: never below the clock in milliseconds.
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.number = (self.number + 1).max(ms);
        let mut out = Vec::new();
        for (authority, (list, until)) in inputs {
            let serials: Vec<(String, SystemTime)> = list
                .iter()
                .map(|(serial, at)| (serial.clone(), from_unix_seconds(*at)))
                .collect();
            let next_update = from_unix_seconds(*until).max(now);
            if let Some(der) = self
                .ca
                .sign_crl(authority, &serials, self.number, next_update)?
            {
                out.push(StoredCrl {
                    authority_id: authority.clone(),
                    server_id: self.server_id.clone(),
                    der,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
