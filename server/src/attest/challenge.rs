//! The nonces of challenge/response attestation (x509pop, tpm): random,
//! single-use, short-lived.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rand::RngCore;

use super::AttestError;

pub const NONCE_LEN: usize = 32;
/// How long a challenge may wait for its answer.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(30);

/// Outstanding challenges: each nonce answers once, before it expires.
#[derive(Debug, Default)]
pub struct Challenges {
    open: Mutex<HashMap<[u8; NONCE_LEN], SystemTime>>,
}

impl Challenges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; NONCE_LEN], SystemTime>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh random nonce, valid until `now + CHALLENGE_TTL`.
    pub fn issue(&self, now: SystemTime) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut open = self.lock();
        open.retain(|_, expires| *expires > now);
        open.insert(nonce, now + CHALLENGE_TTL);
        nonce
    }

    /// Spends `nonce`: refused when unknown, already spent or expired.
    pub fn redeem(&self, nonce: &[u8; NONCE_LEN], now: SystemTime) -> Result<(), AttestError> {
        match self.lock().remove(nonce) {
            Some(expires) if expires > now => Ok(()),
            _ => Err(AttestError::StaleChallenge),
        }
    }
}
