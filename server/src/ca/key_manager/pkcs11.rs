//! Keys in an HSM over PKCS#11 (`[key_manager.pkcs11]`): made inside the
//! token as sensitive, non-extractable token objects, and used there for
//! every signature. A new pair is labelled `signet:pending:<n>` until its
//! authority is named, then `signet:<x509|jwt>:<id>`; removing the
//! authority destroys both objects. The private key never exists outside
//! the token, so the data dir holds no CA key at all.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use signet_core::jwt::{HeldKey, JwtKeyType, JwtPublicKey};

use super::{safe, KeyManager, PrivateKey};
use crate::ca::{AuthorityKind, CaError};

/// DER of the OID prime256v1 (P-256), the `CKA_EC_PARAMS` of EC keys.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// `[key_manager.pkcs11]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Settings {
    /// The vendor's PKCS#11 module (a shared library).
    pub module_path: PathBuf,
    /// The token the keys live in, by its label.
    pub token_label: String,
    /// The user PIN's file: first line, not readable by others.
    pub pin_file: PathBuf,
}

pub struct Pkcs11Keys {
    token: Arc<Token>,
}

/// One logged-in token and the sessions this process holds on it.
struct Token {
    ctx: Pkcs11,
    slot: Slot,
    /// Sessions not in use. PKCS#11 sessions are single-threaded; signing
    /// takes one, and a concurrent signature opens another. They are kept
    /// for the life of the process: the login lasts as long as one is open.
    idle: Mutex<Vec<Session>>,
    /// Kept (zeroized on drop) to log in again after the device closed
    /// every session.
    pin: AuthPin,
    label: String,
    pin_file: PathBuf,
}

fn ck(what: &str, e: CkError) -> CaError {
    CaError::Key(format!("PKCS#11 {what}: {e}"))
}

impl Pkcs11Keys {
    /// Loads the module, finds the token by label and logs in (blocking).
    pub fn open(settings: &Pkcs11Settings) -> Result<Self, CaError> {
        let pin = read_pin(&settings.pin_file)?;
        let ctx = Pkcs11::new(&settings.module_path).map_err(|e| {
            CaError::Key(format!(
                "PKCS#11 module {}: {e}",
                settings.module_path.display()
            ))
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(ck("initialize", e)),
        }
        let mut slot = None;
        for s in ctx.get_slots_with_token().map_err(|e| ck("slots", e))? {
            let info = ctx.get_token_info(s).map_err(|e| ck("token info", e))?;
            if info.label().trim_end() == settings.token_label {
                slot = Some(s);
                break;
            }
        }
        let slot = slot.ok_or_else(|| {
            CaError::Key(format!(
                "no PKCS#11 token labelled {:?} in {}",
                settings.token_label,
                settings.module_path.display()
            ))
        })?;
        let token = Token {
            ctx,
            slot,
            idle: Mutex::new(Vec::new()),
            pin,
            label: settings.token_label.clone(),
            pin_file: settings.pin_file.clone(),
        };
        // Logs in, and keeps the session: the login lasts while one is open.
        let session = token.open_session()?;
        token
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
        Ok(Self {
            token: Arc::new(token),
        })
    }

    pub fn token_label(&self) -> &str {
        &self.token.label
    }
}

impl Token {
    /// A new session, logged in: the login is the application's, so this
    /// is a no-op while another session is open, and logs in again after
    /// the device dropped them all.
    fn open_session(&self) -> Result<Session, CaError> {
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| ck("open session", e))?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            // The PIN itself is never part of the message.
            Err(e) => Err(CaError::Key(format!(
                "PKCS#11 login to token {:?} (PIN from {}): {e}",
                self.label,
                self.pin_file.display()
            ))),
        }
    }

    /// Runs `f` on a session of its own: an idle one, or a new one.
    fn with_session<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Session) -> Result<T, CkError>,
    ) -> Result<T, CaError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let session = match idle {
            Some(s) => s,
            None => self.open_session()?,
        };
        let out = f(&session);
        // A session the device closed (removed, reset) is dropped; the next
        // call opens a fresh one.
        let broken = matches!(
            out,
            Err(CkError::Pkcs11(
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::DeviceRemoved
                    | RvError::TokenNotPresent,
                _
            ))
        );
        if !broken {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(session);
        }
        out.map_err(|e| ck(what, e))
    }
}

fn read_pin(path: &Path) -> Result<AuthPin, CaError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| CaError::Io(path.to_owned(), e.to_string());
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(CaError::Key(format!(
            "PIN file {} is readable by other users: chmod 0600 (or 0400) it",
            path.display()
        )));
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    let pin = text.lines().next().unwrap_or("");
    if pin.is_empty() {
        return Err(CaError::Key(format!(
            "PIN file {} is empty",
            path.display()
        )));
    }
    Ok(AuthPin::from(pin.to_owned()))
}

fn label(kind: AuthorityKind, id: &str) -> Result<Vec<u8>, CaError> {
    Ok(format!("signet:{}:{}", kind.as_str(), safe(id)?).into_bytes())
}

/// The objects (private and public key) labelled `label`.
fn objects(s: &Session, label: &[u8], class: ObjectClass) -> Result<Vec<ObjectHandle>, CkError> {
    s.find_objects(&[Attribute::Class(class), Attribute::Label(label.to_vec())])
}

impl KeyManager for Pkcs11Keys {
    fn generate(&self, kind: AuthorityKind, jwt_type: JwtKeyType) -> Result<PrivateKey, CaError> {
        let pending = format!("signet:pending:{}", hex::encode(rand::random::<[u8; 8]>()));
        let id = rand::random::<[u8; 16]>().to_vec();
        let rsa = kind == AuthorityKind::Jwt && jwt_type == JwtKeyType::Rsa2048;
        let mut public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Label(pending.clone().into_bytes()),
            Attribute::Id(id.clone()),
        ];
        let private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            // A signing key and nothing else.
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Label(pending.into_bytes()),
            Attribute::Id(id),
        ];
        let mechanism = if rsa {
            public.push(Attribute::ModulusBits(2048.into()));
            public.push(Attribute::PublicExponent(vec![1, 0, 1]));
            Mechanism::RsaPkcsKeyPairGen
        } else {
            public.push(Attribute::EcParams(P256_PARAMS.to_vec()));
            Mechanism::EccKeyPairGen
        };
        let (handle, public) = self.token.with_session("generate a key pair", |s| {
            let (public, private) = s.generate_key_pair(&mechanism, &public, &private)?;
            Ok((private, read_public(s, public)?))
        })?;
        let public = public?;
        Ok(PrivateKey::Held(Arc::new(TokenKey {
            token: self.token.clone(),
            handle,
            public,
        })))
    }

    fn store(&self, kind: AuthorityKind, id: &str, key: &PrivateKey) -> Result<(), CaError> {
        let PrivateKey::Held(key) = key else {
            return Err(CaError::Key(
                "only keys made in the token can be kept there".into(),
            ));
        };
        let Some(key) = key.as_any().downcast_ref::<TokenKey>() else {
            return Err(CaError::Key("a key of another device".into()));
        };
        let label = label(kind, id)?;
        self.token.with_session("label a key", |s| {
            let attrs = s.get_attributes(key.handle, &[AttributeType::Id])?;
            let pair = attrs
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Id(id) => Some(id),
                    _ => None,
                })
                .unwrap_or_default();
            // The private key, then its public half (found by their shared id).
            s.update_attributes(key.handle, &[Attribute::Label(label.clone())])?;
            for h in s.find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(pair),
            ])? {
                s.update_attributes(h, &[Attribute::Label(label.clone())])?;
            }
            Ok(())
        })
    }

    fn load(&self, kind: AuthorityKind, id: &str) -> Result<Option<PrivateKey>, CaError> {
        let label = label(kind, id)?;
        let found = self.token.with_session("find a key", |s| {
            let Some(&handle) = objects(s, &label, ObjectClass::PRIVATE_KEY)?.first() else {
                return Ok(None);
            };
            let Some(&public) = objects(s, &label, ObjectClass::PUBLIC_KEY)?.first() else {
                return Ok(Some((handle, None)));
            };
            Ok(Some((handle, Some(read_public(s, public)?))))
        })?;
        let Some((handle, public)) = found else {
            return Ok(None);
        };
        let public = public.ok_or_else(|| {
            CaError::Key(format!("the token holds no public key for {kind:?} {id}"))
        })??;
        Ok(Some(PrivateKey::Held(Arc::new(TokenKey {
            token: self.token.clone(),
            handle,
            public,
        }))))
    }

    fn remove(&self, kind: AuthorityKind, id: &str) {
        let Ok(label) = label(kind, id) else { return };
        let removed = self.token.with_session("destroy a key", |s| {
            for h in s.find_objects(&[Attribute::Label(label.clone())])? {
                s.destroy_object(h)?;
            }
            Ok(())
        });
        if let Err(e) = removed {
            tracing::warn!(kind = kind.as_str(), id, error = %e, "token key not destroyed");
        }
    }
}

/// The public key of `public` (P-256 or RSA), or why it is unusable.
fn read_public(
    s: &Session,
    public: ObjectHandle,
) -> Result<Result<JwtPublicKey, CaError>, CkError> {
    let attrs = s.get_attributes(
        public,
        &[
            AttributeType::KeyType,
            AttributeType::EcPoint,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
        ],
    )?;
    let (mut ty, mut point, mut n, mut e) = (None, None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => ty = Some(t),
            Attribute::EcPoint(p) => point = Some(p),
            Attribute::Modulus(m) => n = Some(m),
            Attribute::PublicExponent(x) => e = Some(x),
            _ => {}
        }
    }
    Ok(match (ty, point, n, e) {
        (Some(KeyType::EC), Some(p), _, _) => ec_point(&p).map(JwtPublicKey::P256),
        (Some(KeyType::RSA), _, Some(n), Some(e)) => Ok(JwtPublicKey::Rsa {
            n: unsigned(n),
            e: unsigned(e),
        }),
        _ => Err(CaError::Key(
            "the token's public key is neither P-256 nor RSA".into(),
        )),
    })
}

/// The uncompressed P-256 point of `CKA_EC_POINT`: DER OCTET STRING as the
/// standard says, or the bare point some modules return.
fn ec_point(raw: &[u8]) -> Result<Vec<u8>, CaError> {
    let point = match raw {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        _ => raw,
    };
    match point {
        [0x04, ..] if point.len() == 65 => Ok(point.to_vec()),
        _ => Err(CaError::Key(format!(
            "the token's EC point ({} bytes) is not an uncompressed P-256 point",
            raw.len()
        ))),
    }
}

/// A big-endian integer without leading zero bytes (JWK form).
fn unsigned(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros.min(bytes.len().saturating_sub(1)));
    bytes
}

/// A private key object on the token.
pub struct TokenKey {
    token: Arc<Token>,
    handle: ObjectHandle,
    public: JwtPublicKey,
}

impl HeldKey for TokenKey {
    fn public_key(&self) -> &JwtPublicKey {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let signed = match self.public {
            JwtPublicKey::Rsa { .. } => self.token.with_session("sign", |s| {
                s.sign(&Mechanism::Sha256RsaPkcs, self.handle, msg)
            }),
            _ => {
                // CKM_ECDSA signs a digest: every module has it, unlike
                // CKM_ECDSA_SHA256. Its output is r‖s.
                let digest = ring::digest::digest(&ring::digest::SHA256, msg);
                self.token.with_session("sign", |s| {
                    s.sign(&Mechanism::Ecdsa, self.handle, digest.as_ref())
                })
            }
        };
        signed.map_err(|e| e.to_string())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ec_point_is_taken_wrapped_or_bare_and_nothing_else() {
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend(&point);
        assert_eq!(ec_point(&wrapped).unwrap(), point);
        assert_eq!(ec_point(&point).unwrap(), point);
        assert!(ec_point(&point[..40]).is_err());
        assert!(ec_point(&[]).is_err());
    }

    #[test]
    fn integers_lose_leading_zeros_but_never_become_empty() {
        assert_eq!(unsigned(vec![0, 0, 1, 0]), vec![1, 0]);
        assert_eq!(unsigned(vec![0]), vec![0]);
        assert_eq!(unsigned(vec![]), Vec::<u8>::new());
    }

    #[test]
    fn a_pin_file_readable_by_others_or_empty_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "1234\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_pin(&path).err().unwrap().to_string();
        assert!(e.contains("readable by other users"), "{e}");
        assert!(!e.contains("1234"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_pin(&path).is_ok());
        std::fs::write(&path, "").unwrap();
        assert!(read_pin(&path).err().unwrap().to_string().contains("empty"));
    }
}
