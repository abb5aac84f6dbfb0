//! Where authorities' private keys live, apart from their public state in
//! the datastore: on disk, 0600 (the default), in memory (tests), or in an
//! HSM's token over PKCS#11, where they are made and never leave. Every
//! call may block: callers run them on the blocking pool.

mod disk;
mod memory;
pub mod pkcs11;

use std::sync::Arc;

use signet_core::jwt::{HeldKey, JwtKeyType};
use zeroize::Zeroizing;

use super::{AuthorityKind, CaError};

pub use disk::DiskKeys;
pub use memory::MemoryKeys;
pub use pkcs11::Pkcs11Keys;

/// An authority's private key, as a key manager hands it out.
#[derive(Clone)]
pub enum PrivateKey {
    /// PKCS#8 DER in this process's memory.
    Software(Zeroizing<Vec<u8>>),
    /// Held by a token: it signs there and cannot be read.
    Held(Arc<dyn HeldKey>),
}

impl std::fmt::Debug for PrivateKey {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PrivateKey::Software(_) => "PrivateKey::Software",
            PrivateKey::Held(_) => "PrivateKey::Held",
        })
    }
}

pub trait KeyManager: Send + Sync + 'static {
    /// A new private key for an authority of `kind`: P-256 for an X.509
    /// CA, `jwt_type` for a JWT key. Not kept until [`KeyManager::store`]
    /// names it (the id of an X.509 CA comes from its certificate).
    fn generate(&self, kind: AuthorityKind, jwt_type: JwtKeyType) -> Result<PrivateKey, CaError> {
        software_key(kind, jwt_type)
    }
    /// Keeps `key` as the key of authority `id`; durable when this returns.
    fn store(&self, kind: AuthorityKind, id: &str, key: &PrivateKey) -> Result<(), CaError>;
    /// The private key of authority `id`, if held.
    fn load(&self, kind: AuthorityKind, id: &str) -> Result<Option<PrivateKey>, CaError>;
    /// Forgets the key of an authority that left the bundle (best effort:
    /// nothing names it any more).
    fn remove(&self, kind: AuthorityKind, id: &str);
}

/// A new key generated in this process.
pub fn software_key(kind: AuthorityKind, jwt_type: JwtKeyType) -> Result<PrivateKey, CaError> {
    let der = match kind {
        AuthorityKind::X509 => rcgen::KeyPair::generate()
            .map_err(|e| CaError::Key(e.to_string()))?
            .serialize_der(),
        AuthorityKind::Jwt => signet_core::jwt::generate_pkcs8(jwt_type)?,
    };
    Ok(PrivateKey::Software(Zeroizing::new(der)))
}

/// Ids are hex; anything else is refused so an id never becomes a path or
/// a label of someone else's object.
fn safe(id: &str) -> Result<&str, CaError> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(CaError::Key(format!("invalid authority id {id:?}")))
    }
}
