//! `[key_manager.tpm]`: the agent's own key made in the TPM under a storage
//! parent (the SRK), ECDSA P-256. Only the TPM's sealed blobs (the public
//! area and the private area wrapped by the parent) leave it; each
//! signature loads the key, signs a SHA-256 digest computed here, and
//! flushes it. The calls block on the device.

use sha2::{Digest as _, Sha256};
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::{EccSchemeAlgorithm, HashingAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::structures::{
    Digest, EccScheme, HashScheme, HashcheckTicket, Private, Public, SignatureScheme,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::Context;

use super::device::{connect, failed, fixed_ecdsa, persistent};
use super::TpmError;

/// A P-256 signing key resident in the TPM, as its blobs.
#[derive(Clone)]
pub struct TpmKey {
    tcti: String,
    parent: u32,
    /// TPMT_PUBLIC, marshalled.
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE's contents: wrapped by the parent, useless elsewhere.
    pub private: Vec<u8>,
    /// Uncompressed SEC1 point.
    pub point: Vec<u8>,
}

impl std::fmt::Debug for TpmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmKey")
            .field("tcti", &self.tcti)
            .field("parent", &format_args!("{:#010x}", self.parent))
            .finish_non_exhaustive()
    }
}

impl TpmKey {
    /// Makes a new key in the TPM under `parent`.
    pub fn generate(tcti: &str, parent: u32) -> Result<Self, TpmError> {
        let template = tss_esapi::utils::create_unrestricted_signing_ecc_public(
            EccScheme::create(
                EccSchemeAlgorithm::EcDsa,
                Some(HashingAlgorithm::Sha256),
                None,
            )
            .map_err(failed("the key template"))?,
            EccCurve::NistP256,
        )
        .map_err(failed("the key template"))?;
        let mut ctx = connect(tcti)?;
        let parent_key = persistent(&mut ctx, parent)?;
        let created = ctx
            .execute_with_nullauth_session(|c| {
                c.create(parent_key, template, None, None, None, None)
            })
            .map_err(failed("creating the agent key"));
        super::device::close(&mut ctx, parent_key);
        let created = created?;
        let public = created
            .out_public
            .marshall()
            .map_err(failed("marshalling the agent key"))?;
        Self::from_blobs(tcti, parent, public, created.out_private.value().to_vec())
    }

    /// A key from its stored blobs (the TPM is not asked).
    pub fn from_blobs(
        tcti: &str,
        parent: u32,
        public: Vec<u8>,
        private: Vec<u8>,
    ) -> Result<Self, TpmError> {
        let Ok(Public::Ecc { unique, .. }) = Public::unmarshall(&public) else {
            return Err(TpmError::KeyNotEcc);
        };
        let (x, y) = (unique.x().value(), unique.y().value());
        if x.len() > 32 || y.len() > 32 {
            return Err(TpmError::KeyNotEcc);
        }
        let mut point = vec![4u8];
        for c in [x, y] {
            point.extend(std::iter::repeat_n(0u8, 32 - c.len()));
            point.extend_from_slice(c);
        }
        Ok(Self {
            tcti: tcti.to_owned(),
            parent,
            public,
            private,
            point,
        })
    }

    /// ECDSA P-256 with SHA-256 over `message`: `r || s`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, TpmError> {
        let digest =
            Digest::try_from(Sha256::digest(message).to_vec()).map_err(failed("the digest"))?;
        let mut ctx = connect(&self.tcti)?;
        let key = self.load(&mut ctx)?;
        let signature = sign_digest(&mut ctx, key, digest);
        if let Err(e) = ctx.flush_context(ObjectHandle::from(key)) {
            tracing::warn!(error = %e, "tpm: cannot flush the agent key");
        }
        fixed_ecdsa(signature?)
    }

    fn load(&self, ctx: &mut Context) -> Result<KeyHandle, TpmError> {
        let private = Private::try_from(self.private.clone()).map_err(failed("the agent key"))?;
        let public = Public::unmarshall(&self.public).map_err(failed("the agent key"))?;
        let parent = persistent(ctx, self.parent)?;
        let loaded = ctx
            .execute_with_nullauth_session(|c| c.load(parent, private, public))
            .map_err(failed("loading the agent key (was the TPM cleared?)"));
        super::device::close(ctx, parent);
        loaded
    }
}

fn sign_digest(
    ctx: &mut Context,
    key: KeyHandle,
    digest: Digest,
) -> Result<tss_esapi::structures::Signature, TpmError> {
    // A NULL ticket: the digest was not made by the TPM, which an
    // unrestricted key accepts.
    let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .map_err(failed("the hash ticket"))?;
    let scheme = SignatureScheme::EcDsa {
        hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
    };
    ctx.execute_with_nullauth_session(|c| c.sign(key, digest, scheme, ticket))
        .map_err(failed("signing with the agent key"))
}
