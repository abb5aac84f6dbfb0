//! Fakes shared by the crate's tests: a JWT minter that signs locally and
//! counts its calls, so the JWT-SVID cache is tested without a server; a
//! registration entry with the defaults tests do not care about; and real
//! Node API servers of an HA group ([`node_server`]).

pub mod node_server;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use signet_core::jwt::{mint_jwt_svid, JwtSigner, MintParams};
use signet_core::{Clock, RegistrationEntry, SpiffeId};

use crate::cache::{JwtMinter, MintError};
use signet_core::bundle::Bundle;
use signet_core::JwtSvid;

/// An entry `id` for `spiffe_id` under `parent_id` with these selectors,
/// default TTLs, no DNS names, revision 1.
pub fn entry(id: &str, spiffe_id: &str, parent_id: &str, selectors: &[&str]) -> RegistrationEntry {
    RegistrationEntry {
        id: id.into(),
        spiffe_id: SpiffeId::parse(spiffe_id).unwrap(),
        parent_id: SpiffeId::parse(parent_id).unwrap(),
        selectors: selectors.iter().map(|s| s.parse().unwrap()).collect(),
        x509_svid_ttl: None,
        jwt_svid_ttl: None,
        dns_names: vec![],
        hint: String::new(),
        admin: false,
        downstream: false,
        revision: 1,
        federates_with: vec![],
    }
}

pub struct FakeMinter {
    pub signer: Arc<JwtSigner>,
    pub clock: Arc<dyn Clock>,
    pub ttl: Duration,
    /// How long each mint takes (tokio time, so tests can pause it).
    pub delay: Duration,
    pub calls: AtomicUsize,
    pub unreachable: AtomicBool,
    /// Entry id → the SPIFFE ID its tokens carry.
    pub subjects: Mutex<HashMap<String, SpiffeId>>,
}

impl FakeMinter {
    pub fn new(signer: Arc<JwtSigner>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            signer,
            clock,
            ttl,
            delay: Duration::ZERO,
            calls: AtomicUsize::new(0),
            unreachable: AtomicBool::new(false),
            subjects: Mutex::default(),
        }
    }

    pub fn with_subject(self, entry_id: &str, spiffe_id: &str) -> Self {
        self.subjects
            .lock()
            .unwrap()
            .insert(entry_id.into(), SpiffeId::parse(spiffe_id).unwrap());
        self
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn set_unreachable(&self, down: bool) {
        self.unreachable.store(down, Ordering::SeqCst);
    }
}

#[async_trait]
impl JwtMinter for FakeMinter {
    async fn mint(&self, entry_id: &str, audience: &[String]) -> Result<JwtSvid, MintError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(MintError::Unreachable("connection refused".into()));
        }
        let subject = self
            .subjects
            .lock()
            .unwrap()
            .get(entry_id)
            .cloned()
            .ok_or_else(|| MintError::Refused(format!("NotFound: no entry {entry_id}")))?;
        let issued_at = self.clock.now();
        let expires_at = issued_at + self.ttl;
        let token = mint_jwt_svid(
            &self.signer,
            &MintParams {
                subject: &subject,
                audience,
                issued_at,
                expires_at,
                jti: format!("jti-{n}"),
                issuer: None,
            },
        )
        .map_err(|e| MintError::Refused(e.to_string()))?;
        Ok(JwtSvid {
            token,
            issued_at,
            expires_at,
        })
    }
}

/// Wall time that follows tokio's (possibly paused) clock.
pub struct TokioClock {
    base: std::time::SystemTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> std::time::SystemTime {
        self.base + self.start.elapsed()
    }
}

/// A bundle of example.org with these X.509 authorities and no JWT keys.
pub fn x509_bundle(x509_authorities: Vec<Vec<u8>>) -> Bundle {
    Bundle {
        trust_domain: signet_core::TrustDomain::new("example.org").unwrap(),
        x509_authorities,
        jwt_authorities: vec![],
        sequence: 1,
    }
}
