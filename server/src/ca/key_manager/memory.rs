//! Keys held only in this process: they die with it (tests).

use std::collections::HashMap;
use std::sync::Mutex;

use super::{KeyManager, PrivateKey};
use crate::ca::{AuthorityKind, CaError};

/// Private keys by (kind, id).
type KeyMap = HashMap<(&'static str, String), PrivateKey>;

#[derive(Default)]
pub struct MemoryKeys {
    keys: Mutex<KeyMap>,
}

impl MemoryKeys {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeyMap> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KeyManager for MemoryKeys {
    fn store(&self, kind: AuthorityKind, id: &str, key: &PrivateKey) -> Result<(), CaError> {
        self.lock()
            .insert((kind.as_str(), id.to_owned()), key.clone());
        Ok(())
    }

    fn load(&self, kind: AuthorityKind, id: &str) -> Result<Option<PrivateKey>, CaError> {
        Ok(self.lock().get(&(kind.as_str(), id.to_owned())).cloned())
    }

    fn remove(&self, kind: AuthorityKind, id: &str) {
        self.lock().remove(&(kind.as_str(), id.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_keys_hold_what_was_stored_until_removed() {
        let keys = MemoryKeys::default();
        let key = keys
            .generate(AuthorityKind::Jwt, Default::default())
            .unwrap();
        keys.store(AuthorityKind::Jwt, "01", &key).unwrap();
        assert!(matches!(
            keys.load(AuthorityKind::Jwt, "01").unwrap(),
            Some(PrivateKey::Software(_))
        ));
        assert!(keys.load(AuthorityKind::X509, "01").unwrap().is_none());
        keys.remove(AuthorityKind::Jwt, "01");
        assert!(keys.load(AuthorityKind::Jwt, "01").unwrap().is_none());
    }
}
