//! The server half against a TPM simulated in software (its EK an RSA key
//! here, its attestation key a ring key): what a real TPM answers is
//! checked end to end with swtpm in tests/tests/tpm.rs; here, every way
//! an answer can be wrong.

use std::sync::Arc;
use std::time::Duration;

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use rsa::traits::PublicKeyParts;
use signet_core::{Clock, ManualClock, SystemClock, TrustDomain};

use super::credential::{hmac_sha256, kdfa};
use super::*;
use crate::ca::{CaSettings, MemoryKeys};
use crate::datastore::SqliteDataStore;

const ECDSA: u16 = 0x0018;
const PCR: u32 = 16;

/// A TPM in software: an RSA EK and a P-256 key with the given attributes.
struct FakeTpm {
    ek: rsa::RsaPrivateKey,
    key: EcdsaKeyPair,
    attributes: u32,
}

impl FakeTpm {
    fn new(attributes: u32) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        FakeTpm {
            ek: rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap(),
            key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap(),
            attributes,
        }
    }

    fn ek_public(&self) -> Vec<u8> {
        let mut b = vec![0x00, 0x01, 0x00, 0x0b];
        b.extend_from_slice(&0x0003_00b2u32.to_be_bytes()); // the default EK's attributes
        b.extend_from_slice(&[0, 32]);
        b.extend_from_slice(&[0xaa; 32]); // authPolicy
        b.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43]); // AES-128-CFB
        b.extend_from_slice(&[0x00, 0x10, 0x08, 0x00, 0, 0, 0, 0]); // no scheme, 2048, 65537
        let n = self.ek.n().to_bytes_be();
        b.extend_from_slice(&(n.len() as u16).to_be_bytes());
        b.extend_from_slice(&n);
        b
    }

    fn point(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    fn key_public(&self) -> Vec<u8> {
        let mut b = vec![0x00, 0x23, 0x00, 0x0b];
        b.extend_from_slice(&self.attributes.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0x00, 0x10]); // no policy, no symmetric
        b.extend_from_slice(&ECDSA.to_be_bytes());
        b.extend_from_slice(&[0x00, 0x0b, 0x00, 0x03, 0x00, 0x10]); // SHA-256, P-256, no KDF
        for c in [&self.point()[1..33], &self.point()[33..]] {
            b.extend_from_slice(&[0, 32]);
            b.extend_from_slice(c);
        }
        b
    }

    /// TPM2_ActivateCredential in software.
    fn activate(&self, challenge: &TpmChallenge, name: &[u8]) -> Option<Vec<u8>> {
        let seed = self
            .ek
            .decrypt(
                rsa::Oaep::new_with_label::<Sha256, _>("IDENTITY\0"),
                &challenge.encrypted_secret,
            )
            .ok()?;
        let (integrity, enc_identity) = challenge.id_object.get(2..)?.split_at(32);
        let hmac_key = kdfa(&seed, "INTEGRITY", &[], 256);
        if hmac_sha256(&hmac_key, &[enc_identity, name]) != integrity {
            return None;
        }
        let mut plain = enc_identity.to_vec();
        let sym_key = kdfa(&seed, "STORAGE", name, 128);
        cfb_mode::Decryptor::<aes::Aes128>::new(sym_key.as_slice().into(), &[0u8; 16].into())
            .decrypt(&mut plain);
        Some(plain.get(2..)?.to_vec())
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key
            .sign(&SystemRandom::new(), message)
            .unwrap()
            .as_ref()
            .to_vec()
    }

    /// A TPMS_ATTEST quoting `pcrs` with `values` over `nonce`.
    fn quote(nonce: &[u8], pcrs: &[u32], values: &[Vec<u8>]) -> Vec<u8> {
        let mut b = 0xff54_4347u32.to_be_bytes().to_vec();
        b.extend_from_slice(&0x8018u16.to_be_bytes());
        b.extend_from_slice(&[0, 0]); // qualifiedSigner
        b.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
        b.extend_from_slice(nonce);
        b.extend_from_slice(&[0; 17 + 8]);
        b.extend_from_slice(&1u32.to_be_bytes());
        let mut bitmap = [0u8; 3];
        for i in pcrs {
            bitmap[*i as usize / 8] |= 1 << (i % 8);
        }
        b.extend_from_slice(&[0x00, 0x0b, 3]);
        b.extend_from_slice(&bitmap);
        let digest = Sha256::digest(values.concat());
        b.extend_from_slice(&[0, 32]);
        b.extend_from_slice(&digest);
        b
    }
}

const RESIDENT: u32 = RESIDENT_SIGNING_KEY;

struct Owner {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn owner_ca() -> Owner {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "Owner CA");
    p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let key = KeyPair::generate().unwrap();
    Owner {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

impl Owner {
    /// The owner's certificate for `point` (an uncompressed P-256 point).
    fn certify(&self, point: &[u8], cn: &str) -> Vec<u8> {
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(point);
        let public = rcgen::SubjectPublicKeyInfo::from_der(&spki).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = (SystemClock.now() - Duration::from_secs(60)).into();
        p.not_after = (SystemClock.now() + Duration::from_secs(3600)).into();
        let issuer = Issuer::from_ca_cert_der(self.cert.der(), &self.key).unwrap();
        p.signed_by(&public, &issuer).unwrap().der().to_vec()
    }

    fn trusted(&self) -> Vec<TrustedCa> {
        vec![TrustedCa {
            der: self.cert.der().to_vec(),
            fingerprint: String::new(),
        }]
    }
}

async fn attestor(owner: &Owner, pcrs: Vec<u32>) -> (TpmAttestor, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ds: Arc<dyn DataStore> = Arc::new(
        SqliteDataStore::open(&dir.path().join("ds.sqlite3"))
            .await
            .unwrap(),
    );
    let settings = CaSettings {
        trust_domain: TrustDomain::new("example.org").unwrap(),
        server_id: "s".into(),
        upstream: None,
        ca_ttl: Duration::from_secs(3600),
        default_svid_ttl: Duration::from_secs(600),
        default_jwt_svid_ttl: Duration::from_secs(300),
        backdate: Duration::from_secs(30),
        schedule: Default::default(),
        jwt_key_type: Default::default(),
        jwt_issuer: None,
    };
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let (ca, _) =
        CertificateAuthority::start(settings, clock, ds.clone(), Arc::new(MemoryKeys::default()))
            .await
            .unwrap();
    (
        TpmAttestor::new(owner.trusted(), pcrs, ds, Arc::new(ca)),
        dir,
    )
}

fn params(tpm: &FakeTpm, cert: Vec<u8>) -> Method {
    Method::Tpm(TpmParams {
        ek_public: tpm.ek_public(),
        attestation_key_public: tpm.key_public(),
        cert_chain: vec![cert],
    })
}

/// The first step: the challenge and what checks its answer.
async fn challenge(
    attestor: &TpmAttestor,
    evidence: &Method,
) -> Result<(TpmChallenge, Box<dyn PendingChallenge>), AttestError> {
    match attestor.begin(evidence).await? {
        Exchange::Challenge { challenge, pending } => {
            Ok((TpmChallenge::decode(challenge.as_slice()).unwrap(), pending))
        }
        Exchange::Done(_) => panic!("tpm always challenges"),
    }
}

fn answer(tpm: &FakeTpm, challenge: &TpmChallenge) -> TpmChallengeResponse {
    let name = wire::parse_public("key", &tpm.key_public()).unwrap().name;
    TpmChallengeResponse {
        credential: tpm
            .activate(challenge, &name)
            .expect("the credential opens"),
        signature: tpm.sign(&challenge.nonce),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_resident_certified_key_and_its_ek_attest() {
    let owner = owner_ca();
    let (attestor, _dir) = attestor(&owner, vec![]).await;
    let tpm = FakeTpm::new(RESIDENT);
    let evidence = params(&tpm, owner.certify(tpm.point(), "node-1"));
    let (challenge, pending) = challenge(&attestor, &evidence).await.unwrap();
    assert!(challenge.pcrs.is_empty());
    let verdict = pending
        .answer(&answer(&tpm, &challenge).encode_to_vec())
        .await
        .unwrap();
    let spki = tpm.ek.to_public_key().to_public_key_der().unwrap();
    let ek_hash = hex::encode(Sha256::digest(spki.as_bytes()));
    assert_eq!(
        verdict.agent_id.to_string(),
        format!("spiffe://example.org/signet/agent/tpm/{ek_hash}")
    );
    let selectors: Vec<String> = verdict.selectors.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        selectors,
        [
            format!("tpm:ek_hash:{ek_hash}"),
            "tpm:subject:cn:node-1".into()
        ]
    );
}

#[tokio::test]
async fn wrong_credentials_signatures_and_replays_are_refused() {
    let owner = owner_ca();
    let (attestor, _dir) = attestor(&owner, vec![]).await;
    let tpm = FakeTpm::new(RESIDENT);
    let evidence = params(&tpm, owner.certify(tpm.point(), "node-1"));

    let (c, pending) = challenge(&attestor, &evidence).await.unwrap();
    let mut wrong = answer(&tpm, &c);
    wrong.credential[0] ^= 1;
    let err = pending.answer(&wrong.encode_to_vec()).await.unwrap_err();
    assert!(
        matches!(err, AttestError::Tpm(TpmError::WrongCredential)),
        "{err}"
    );

    let (c, pending) = challenge(&attestor, &evidence).await.unwrap();
    let mut forged = answer(&tpm, &c);
    forged.signature = FakeTpm::new(RESIDENT).sign(&c.nonce);
    let err = pending.answer(&forged.encode_to_vec()).await.unwrap_err();
    assert!(
        matches!(err, AttestError::Tpm(TpmError::BadSignature)),
        "{err}"
    );

    // The answer to a spent challenge, replayed on a new one.
    let (c, pending) = challenge(&attestor, &evidence).await.unwrap();
    let good = answer(&tpm, &c).encode_to_vec();
    pending.answer(&good).await.unwrap();
    let (_, pending) = challenge(&attestor, &evidence).await.unwrap();
    assert!(pending.answer(&good).await.is_err());

    let err = challenge(&attestor, &evidence)
        .await
        .unwrap()
        .1
        .answer(b"\xff")
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttestError::Tpm(TpmError::BadResponse(_))),
        "{err}"
    );
}

#[tokio::test]
async fn keys_that_are_not_resident_not_certified_or_not_trusted_get_no_challenge() {
    let owner = owner_ca();
    let (attestor, _dir) = attestor(&owner, vec![]).await;
    for attributes in [
        RESIDENT & !attr::FIXED_TPM,
        RESIDENT & !attr::SENSITIVE_DATA_ORIGIN,
        RESIDENT | attr::DECRYPT,
    ] {
        let tpm = FakeTpm::new(attributes);
        let err = challenge(&attestor, &params(&tpm, owner.certify(tpm.point(), "n")))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, AttestError::Tpm(TpmError::NotResident(_))),
            "{err}"
        );
    }
    let tpm = FakeTpm::new(RESIDENT);
    let other = FakeTpm::new(RESIDENT);
    let err = challenge(&attestor, &params(&tpm, owner.certify(other.point(), "n")))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, AttestError::Tpm(TpmError::CertificateKeyMismatch)),
        "{err}"
    );
    let rogue = owner_ca();
    let err = challenge(&attestor, &params(&tpm, rogue.certify(tpm.point(), "n")))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, AttestError::Tpm(TpmError::Untrusted(_))),
        "{err}"
    );
    let mut truncated = tpm.ek_public();
    truncated.pop();
    let err = challenge(
        &attestor,
        &Method::Tpm(TpmParams {
            ek_public: truncated,
            attestation_key_public: tpm.key_public(),
            cert_chain: vec![owner.certify(tpm.point(), "n")],
        }),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, AttestError::Tpm(TpmError::Wire(_))), "{err}");
}

#[tokio::test]
async fn pcr_selectors_come_from_a_quote_by_a_restricted_key() {
    let owner = owner_ca();
    let (attestor, _dir) = attestor(&owner, vec![PCR]).await;
    let tpm = FakeTpm::new(RESIDENT | attr::RESTRICTED);
    let evidence = params(&tpm, owner.certify(tpm.point(), "node-1"));
    let measured = vec![0x5a; 32];
    let quoted = |c: &TpmChallenge, values: Vec<Vec<u8>>, sent: Vec<Vec<u8>>| {
        let attest = FakeTpm::quote(&c.nonce, &c.pcrs, &values);
        TpmChallengeResponse {
            signature: tpm.sign(&attest),
            attest,
            pcr_values: sent,
            ..answer(&tpm, c)
        }
    };

    let (c, pending) = challenge(&attestor, &evidence).await.unwrap();
    assert_eq!(c.pcrs, [PCR]);
    let response = quoted(&c, vec![measured.clone()], vec![measured.clone()]);
    let verdict = pending.answer(&response.encode_to_vec()).await.unwrap();
    let pcr = format!("tpm:pcr:{PCR}:{}", hex::encode(&measured));
    assert!(verdict.selectors.iter().any(|s| s.to_string() == pcr));

    // Values other than the quoted ones.
    let (c, pending) = challenge(&attestor, &evidence).await.unwrap();
    let response = quoted(&c, vec![measured.clone()], vec![vec![0; 32]]);
    let err = pending.answer(&response.encode_to_vec()).await.unwrap_err();
    assert!(
        matches!(err, AttestError::Tpm(TpmError::BadQuote(_))),
        "{err}"
    );

    // A quote over another nonce.
    let (c, pending) = challenge(&attestor, &evidence).await.unwrap();
    let stale = TpmChallenge {
        nonce: vec![1; 32],
        ..c.clone()
    };
    let mut response = quoted(&stale, vec![measured.clone()], vec![measured.clone()]);
    response.credential = answer(&tpm, &c).credential;
    let err = pending.answer(&response.encode_to_vec()).await.unwrap_err();
    assert!(
        matches!(err, AttestError::Tpm(TpmError::BadQuote(_))),
        "{err}"
    );

    // An unrestricted key could sign a forged quote: no PCRs are asked of it.
    let loose = FakeTpm::new(RESIDENT);
    let evidence = params(&loose, owner.certify(loose.point(), "node-2"));
    let (c, pending) = challenge(&attestor, &evidence).await.unwrap();
    assert!(c.pcrs.is_empty());
    let verdict = pending
        .answer(&answer(&loose, &c).encode_to_vec())
        .await
        .unwrap();
    assert!(!verdict
        .selectors
        .iter()
        .any(|s| s.to_string().starts_with("tpm:pcr:")));
}
