//! The TPM itself, through tss-esapi over libtss2: each call opens its own
//! connection (no resource manager may be in front of the TPM, and a
//! simulator serves one client at a time), flushes what it loaded, and
//! blocks, so callers run it on a blocking thread.

use std::str::FromStr;

use tss_esapi::abstraction::{ek, AsymmetricAlgorithmSelection};
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{
    AuthHandle, KeyHandle, ObjectHandle, PersistentTpmHandle, SessionHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, EncryptedSecret, HashScheme, IdObject, MaxBuffer, PcrSelectionListBuilder, PcrSlot,
    Public, Signature, SignatureScheme, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

use super::TpmError;

/// Where the TPM is and which objects to use.
#[derive(Debug, Clone)]
pub struct Device {
    pub tcti: String,
    pub key_handle: u32,
    /// `None`: the EK is made (again) from the TCG default RSA template.
    pub ek_handle: Option<u32>,
}

/// What a quote or signature gave.
pub struct Proof {
    pub attest: Vec<u8>,
    pub signature: Vec<u8>,
    pub pcr_values: Vec<Vec<u8>>,
}

pub(super) fn failed(what: &'static str) -> impl Fn(tss_esapi::Error) -> TpmError {
    move |e| TpmError::Device {
        what,
        message: e.to_string(),
    }
}

/// A connection to the TPM `tcti` names.
pub(super) fn connect(tcti: &str) -> Result<Context, TpmError> {
    let conf = TctiNameConf::from_str(tcti).map_err(|_| TpmError::Tcti(tcti.to_owned()))?;
    Context::new(conf).map_err(failed("connecting to the TPM"))
}

impl Device {
    fn connect(&self) -> Result<Context, TpmError> {
        connect(&self.tcti)
    }

    /// The EK's and the attestation key's TPMT_PUBLIC, marshalled.
    pub fn publics(&self) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let mut ctx = self.connect()?;
        let ek = Ek::open(&mut ctx, self.ek_handle)?;
        let ek_public = ctx.read_public(ek.handle).map_err(failed("reading the EK"));
        ek.close(&mut ctx);
        let key = persistent(&mut ctx, self.key_handle)?;
        let key_public = ctx
            .read_public(key)
            .map_err(failed("reading the attestation key"));
        close(&mut ctx, key);
        let marshall = |p: Public| p.marshall().map_err(failed("marshalling a public key"));
        Ok((marshall(ek_public?.0)?, marshall(key_public?.0)?))
    }

    /// TPM2_ActivateCredential: only this TPM, holding the EK and the
    /// attestation key, recovers the credential the server sealed.
    pub fn activate(&self, id_object: &[u8], encrypted_secret: &[u8]) -> Result<Vec<u8>, TpmError> {
        let id_object = IdObject::try_from(id_object.to_vec()).map_err(failed("the credential"))?;
        let secret =
            EncryptedSecret::try_from(encrypted_secret.to_vec()).map_err(failed("the secret"))?;
        let mut ctx = self.connect()?;
        let ek = Ek::open(&mut ctx, self.ek_handle)?;
        let key = match persistent(&mut ctx, self.key_handle) {
            Ok(k) => k,
            Err(e) => {
                ek.close(&mut ctx);
                return Err(e);
            }
        };
        let out = activate_with(&mut ctx, key, ek.handle, id_object, secret);
        close(&mut ctx, key);
        ek.close(&mut ctx);
        out
    }

    /// A TPM2_Quote of `pcrs` (SHA-256 bank) over `nonce`, with the PCR
    /// values; without PCRs, the key's signature over SHA-256(nonce).
    pub fn prove(&self, nonce: &[u8], pcrs: &[u32]) -> Result<Proof, TpmError> {
        let mut ctx = self.connect()?;
        let key = persistent(&mut ctx, self.key_handle)?;
        let out = if pcrs.is_empty() {
            sign(&mut ctx, key, nonce).map(|signature| Proof {
                attest: Vec::new(),
                signature,
                pcr_values: Vec::new(),
            })
        } else {
            quote(&mut ctx, key, nonce, pcrs)
        };
        close(&mut ctx, key);
        out
    }
}

/// The EK: a persistent handle, or one made from the default template
/// (deterministic, so its Name and key are the same each time) and flushed.
struct Ek {
    handle: KeyHandle,
    transient: bool,
}

impl Ek {
    fn open(ctx: &mut Context, persistent_handle: Option<u32>) -> Result<Self, TpmError> {
        match persistent_handle {
            Some(h) => Ok(Ek {
                handle: persistent(ctx, h)?,
                transient: false,
            }),
            None => ctx
                .execute_with_nullauth_session(|c| {
                    ek::create_ek_object_2(
                        c,
                        AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                        None,
                    )
                })
                .map(|handle| Ek {
                    handle,
                    transient: true,
                })
                .map_err(failed("creating the EK from the default template")),
        }
    }

    fn close(self, ctx: &mut Context) {
        if self.transient {
            if let Err(e) = ctx.flush_context(ObjectHandle::from(self.handle)) {
                tracing::warn!(error = %e, "tpm: cannot flush the EK");
            }
        } else {
            close(ctx, self.handle);
        }
    }
}

pub(super) fn persistent(ctx: &mut Context, handle: u32) -> Result<KeyHandle, TpmError> {
    let tpm_handle = PersistentTpmHandle::new(handle).map_err(|_| TpmError::Handle(handle))?;
    ctx.tr_from_tpm_public(TpmHandle::Persistent(tpm_handle))
        .map(KeyHandle::from)
        .map_err(|e| TpmError::Device {
            what: "opening a persistent handle",
            message: format!("{handle:#010x}: {e}"),
        })
}

/// Frees the ESYS handle; a persistent object stays in the TPM.
pub(super) fn close(ctx: &mut Context, key: KeyHandle) {
    if let Err(e) = ctx.tr_close(&mut ObjectHandle::from(key)) {
        tracing::debug!(error = %e, "tpm: closing a handle");
    }
}

fn activate_with(
    ctx: &mut Context,
    key: KeyHandle,
    ek: KeyHandle,
    id_object: IdObject,
    secret: EncryptedSecret,
) -> Result<Vec<u8>, TpmError> {
    // The default EK's policy is PolicySecret(endorsement hierarchy).
    let session = ctx
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(failed("starting a policy session"))?
        .ok_or(TpmError::Device {
            what: "starting a policy session",
            message: "no session returned".into(),
        })?;
    let flush = |ctx: &mut Context| {
        let _ = ctx.flush_context(ObjectHandle::from(SessionHandle::from(session)));
    };
    // continueSession clear: the TPM flushes the session once it is used.
    let (attributes, mask) = SessionAttributesBuilder::new().build();
    let policy = ctx
        .tr_sess_set_attributes(session, attributes, mask)
        .and_then(|()| PolicySession::try_from(session))
        .and_then(|policy| {
            ctx.execute_with_nullauth_session(|c| {
                c.policy_secret(
                    policy,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
        });
    if let Err(e) = policy {
        flush(ctx);
        return Err(failed("satisfying the EK's policy")(e));
    }
    // Session 1 authorises the attestation key (empty password), session 2 the EK.
    ctx.set_sessions((Some(AuthSession::Password), Some(session), None));
    let out = ctx.activate_credential(key, ek, id_object, secret);
    ctx.clear_sessions();
    match out {
        Ok(credential) => Ok(credential.value().to_vec()),
        Err(e) => {
            flush(ctx);
            Err(TpmError::Activate(e.to_string()))
        }
    }
}

fn sign(ctx: &mut Context, key: KeyHandle, nonce: &[u8]) -> Result<Vec<u8>, TpmError> {
    // Hashed in the TPM: its ticket lets a restricted key sign too.
    let data = MaxBuffer::try_from(nonce.to_vec()).map_err(failed("the nonce"))?;
    let (digest, ticket) = ctx
        .execute_without_session(|c| c.hash(data, HashingAlgorithm::Sha256, Hierarchy::Owner))
        .map_err(failed("hashing the nonce"))?;
    let signature = ctx
        .execute_with_nullauth_session(|c| c.sign(key, digest, SignatureScheme::Null, ticket))
        .map_err(failed("signing the nonce"))?;
    fixed_ecdsa(signature)
}

fn quote(ctx: &mut Context, key: KeyHandle, nonce: &[u8], pcrs: &[u32]) -> Result<Proof, TpmError> {
    let slots = pcrs
        .iter()
        .map(|i| {
            let bit = 1u32.checked_shl(*i).ok_or(TpmError::Pcr(*i))?;
            PcrSlot::try_from(bit).map_err(|_| TpmError::Pcr(*i))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let selection = || {
        PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &slots)
            .build()
            .map_err(failed("selecting PCRs"))
    };
    let qualifying = Data::try_from(nonce.to_vec()).map_err(failed("the nonce"))?;
    let scheme = SignatureScheme::EcDsa {
        hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
    };
    let wanted = selection()?;
    let (attest, signature) = ctx
        .execute_with_nullauth_session(|c| c.quote(key, qualifying, scheme, wanted))
        .map_err(failed("quoting PCRs"))?;
    let wanted = selection()?;
    let (_, _, digests) = ctx
        .execute_without_session(|c| c.pcr_read(wanted))
        .map_err(failed("reading PCRs"))?;
    Ok(Proof {
        attest: attest.marshall().map_err(failed("marshalling the quote"))?,
        signature: fixed_ecdsa(signature)?,
        pcr_values: digests.value().iter().map(|d| d.value().to_vec()).collect(),
    })
}

/// `r || s`, each left-padded to 32 bytes (the TPM drops leading zeros).
pub(super) fn fixed_ecdsa(signature: Signature) -> Result<Vec<u8>, TpmError> {
    let Signature::EcDsa(s) = signature else {
        return Err(TpmError::KeyNotEcc);
    };
    let mut out = Vec::with_capacity(64);
    for part in [s.signature_r().value(), s.signature_s().value()] {
        if part.len() > 32 {
            return Err(TpmError::KeyNotEcc);
        }
        out.extend(std::iter::repeat_n(0u8, 32 - part.len()));
        out.extend_from_slice(part);
    }
    Ok(out)
}
