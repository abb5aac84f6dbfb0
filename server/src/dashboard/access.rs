//! Who may read the dashboard without an admin SVID: a one-time login code
//! (from `signet-server dashboard login`, valid 10 minutes) buys one
//! browser a session cookie. Both are random 256-bit values held only as
//! their SHA-256, in this server's memory: a restart logs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use ring::rand::SecureRandom;
use tokio::time::Instant;

pub const LOGIN_TTL: Duration = Duration::from_secs(600);
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Codes or sessions held at most; the oldest go first.
const MAX_HELD: usize = 1000;

type Digest = [u8; 32];

#[derive(Debug, Default)]
struct Held {
    codes: HashMap<Digest, Instant>,
    sessions: HashMap<Digest, Instant>,
}

#[derive(Debug, Default)]
pub struct Access {
    held: Mutex<Held>,
}

#[derive(Debug, thiserror::Error)]
#[error("no randomness for a dashboard login code")]
pub struct NoRandom;

fn digest(secret: &str) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn random_secret() -> Result<String, NoRandom> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| NoRandom)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Keeps at most [`MAX_HELD`] unexpired values.
fn tidy(map: &mut HashMap<Digest, Instant>, now: Instant) {
    map.retain(|_, until| *until > now);
    while map.len() >= MAX_HELD {
        let oldest = map.iter().min_by_key(|(_, until)| **until).map(|(k, _)| *k);
        match oldest {
            Some(k) => map.remove(&k),
            None => break,
        };
    }
}

impl Access {
    /// A new one-time login code.
    pub fn issue_code(&self) -> Result<String, NoRandom> {
        let code = random_secret()?;
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        tidy(&mut held.codes, now);
        held.codes.insert(digest(&code), now + LOGIN_TTL);
        Ok(code)
    }

    /// Spends `code`: a session token if it was issued, unused and fresh.
    pub fn redeem(&self, code: &str) -> Option<String> {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let until = held.codes.remove(&digest(code))?;
        if until <= now {
            return None;
        }
        let session = random_secret().ok()?;
        tidy(&mut held.sessions, now);
        held.sessions.insert(digest(&session), now + SESSION_TTL);
        Some(session)
    }

    pub fn session_valid(&self, token: &str) -> bool {
        let now = Instant::now();
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.sessions
            .get(&digest(token))
            .is_some_and(|until| *until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_code_logs_in_once_and_only_while_fresh() {
        let a = Access::default();
        let code = a.issue_code().unwrap();
        assert_eq!(code.len(), 43);
        let session = a.redeem(&code).unwrap();
        assert!(a.session_valid(&session));
        assert!(a.redeem(&code).is_none(), "a code is spent once");
        assert!(!a.session_valid(&code));
        let late = a.issue_code().unwrap();
        tokio::time::advance(LOGIN_TTL).await;
        assert!(a.redeem(&late).is_none());
        tokio::time::advance(SESSION_TTL).await;
        assert!(!a.session_valid(&session));
        assert!(a.redeem("made-up").is_none());
    }
}
