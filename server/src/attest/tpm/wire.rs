//! The TPM 2.0 structures the server reads (TPM 2.0 Part 2), parsed in
//! Rust rather than handed to a C unmarshaller: they arrive from the
//! network before anything about the agent is known. Only what the `tpm`
//! attestor accepts is parsed; anything else is a precise error.

use sha2::{Digest, Sha256};

const ALG_RSA: u16 = 0x0001;
const ALG_SHA256: u16 = 0x000b;
const ALG_NULL: u16 = 0x0010;
const ALG_RSAES: u16 = 0x0015;
const ALG_ECDAA: u16 = 0x001a;
const ALG_ECC: u16 = 0x0023;
const ECC_NIST_P256: u16 = 0x0003;
/// TPM_GENERATED_VALUE: the TPM itself made the structure.
const GENERATED: u32 = 0xff54_4347;
const ST_ATTEST_QUOTE: u16 = 0x8018;

/// TPMA_OBJECT bits.
pub mod attr {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN: u32 = 1 << 18;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{what} is truncated")]
    Truncated { what: &'static str },
    #[error("{what} has {extra} unexpected trailing bytes")]
    Trailing { what: &'static str, extra: usize },
    #[error("{what}: {message}")]
    Unsupported { what: &'static str, message: String },
}

/// A big-endian reader over a TPM structure.
struct Reader<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self { what, rest: bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated { what: self.what });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    /// A TPM2B: a u16 size, then that many bytes.
    fn sized(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn end(self) -> Result<(), WireError> {
        match self.rest.len() {
            0 => Ok(()),
            extra => Err(WireError::Trailing {
                what: self.what,
                extra,
            }),
        }
    }

    fn unsupported(&self, message: impl Into<String>) -> WireError {
        WireError::Unsupported {
            what: self.what,
            message: message.into(),
        }
    }
}

/// A TPMT_PUBLIC's key, as far as the server cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA modulus and public exponent.
    Rsa { modulus: Vec<u8>, exponent: u32 },
    /// P-256 point, uncompressed SEC1 (`04 || X || Y`).
    EccP256 { point: Vec<u8> },
}

/// A parsed TPMT_PUBLIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    pub attributes: u32,
    pub key: PublicKey,
    /// The object's Name: `nameAlg || SHA-256(TPMT_PUBLIC)`.
    pub name: Vec<u8>,
}

impl Public {
    pub fn has(&self, bits: u32) -> bool {
        self.attributes & bits == bits
    }
}

/// Parses a marshalled TPMT_PUBLIC with a SHA-256 name algorithm.
pub fn parse_public(what: &'static str, bytes: &[u8]) -> Result<Public, WireError> {
    let mut r = Reader::new(what, bytes);
    let kind = r.u16()?;
    let name_alg = r.u16()?;
    if name_alg != ALG_SHA256 {
        return Err(r.unsupported(format!("name algorithm {name_alg:#06x} (SHA-256 expected)")));
    }
    let attributes = r.u32()?;
    r.sized()?; // authPolicy
    symmetric(&mut r)?;
    let key = match kind {
        ALG_RSA => {
            let scheme = r.u16()?;
            if scheme != ALG_NULL && scheme != ALG_RSAES {
                r.u16()?; // the scheme's hash
            }
            let bits = r.u16()?;
            let exponent = match r.u32()? {
                0 => 65_537,
                e => e,
            };
            let modulus = r.sized()?.to_vec();
            if usize::from(bits) != modulus.len() * 8 {
                return Err(r.unsupported(format!(
                    "RSA modulus of {} bytes for a {bits}-bit key",
                    modulus.len()
                )));
            }
            PublicKey::Rsa { modulus, exponent }
        }
        ALG_ECC => {
            let scheme = r.u16()?;
            if scheme != ALG_NULL {
                r.u16()?; // the scheme's hash
                if scheme == ALG_ECDAA {
                    r.u16()?; // its count
                }
            }
            let curve = r.u16()?;
            if r.u16()? != ALG_NULL {
                r.u16()?; // the KDF's hash
            }
            let (x, y) = (r.sized()?, r.sized()?);
            if curve != ECC_NIST_P256 {
                return Err(r.unsupported(format!("ECC curve {curve:#06x} (P-256 expected)")));
            }
            PublicKey::EccP256 {
                point: p256_point(&r, x, y)?,
            }
        }
        other => return Err(r.unsupported(format!("key type {other:#06x} (RSA or ECC expected)"))),
    };
    r.end()?;
    let mut name = ALG_SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(&Sha256::digest(bytes));
    Ok(Public {
        attributes,
        key,
        name,
    })
}

/// TPMT_SYM_DEF_OBJECT: an algorithm, and its key size and mode unless NULL.
fn symmetric(r: &mut Reader<'_>) -> Result<(), WireError> {
    if r.u16()? != ALG_NULL {
        r.u16()?;
        r.u16()?;
    }
    Ok(())
}

/// Left-pads the coordinates (the TPM drops leading zero bytes).
fn p256_point(r: &Reader<'_>, x: &[u8], y: &[u8]) -> Result<Vec<u8>, WireError> {
    if x.len() > 32 || y.len() > 32 {
        return Err(r.unsupported("P-256 coordinate longer than 32 bytes"));
    }
    let mut point = vec![0u8; 65];
    point[0] = 4;
    point[33 - x.len()..33].copy_from_slice(x);
    point[65 - y.len()..].copy_from_slice(y);
    Ok(point)
}

/// What a TPM2_Quote attests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub extra_data: Vec<u8>,
    /// The SHA-256 bank's selected PCR indices, ascending.
    pub pcrs: Vec<u32>,
    pub pcr_digest: Vec<u8>,
}

/// Parses a marshalled TPMS_ATTEST that must be a quote the TPM made.
pub fn parse_quote(bytes: &[u8]) -> Result<Quote, WireError> {
    let mut r = Reader::new("quote", bytes);
    if r.u32()? != GENERATED {
        return Err(r.unsupported("not made by a TPM (no TPM_GENERATED_VALUE)"));
    }
    if r.u16()? != ST_ATTEST_QUOTE {
        return Err(r.unsupported("not a quote"));
    }
    r.sized()?; // qualifiedSigner
    let extra_data = r.sized()?.to_vec();
    r.take(8 + 4 + 4 + 1)?; // clockInfo
    r.take(8)?; // firmwareVersion
    let mut pcrs = Vec::new();
    for _ in 0..r.u32()? {
        let hash = r.u16()?;
        let size = r.u8()?;
        let bitmap = r.take(usize::from(size))?;
        let selected = bitmap.iter().enumerate().flat_map(|(byte, bits)| {
            (0..8u32)
                .filter(move |bit| bits & (1 << bit) != 0)
                .map(move |bit| byte as u32 * 8 + bit)
        });
        if hash == ALG_SHA256 {
            pcrs.extend(selected);
        } else if selected.count() > 0 {
            return Err(r.unsupported(format!("PCRs of bank {hash:#06x} (SHA-256 expected)")));
        }
    }
    let pcr_digest = r.sized()?.to_vec();
    r.end()?;
    Ok(Quote {
        extra_data,
        pcrs,
        pcr_digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ECC P-256 signing key's TPMT_PUBLIC as `tpm2_create -G
    /// ecc256:ecdsa-sha256 -a fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign` makes it.
    fn ecc_public(attributes: u32, x: &[u8], y: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ALG_ECC.to_be_bytes());
        b.extend_from_slice(&ALG_SHA256.to_be_bytes());
        b.extend_from_slice(&attributes.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&ALG_NULL.to_be_bytes());
        b.extend_from_slice(&0x0018u16.to_be_bytes()); // ECDSA
        b.extend_from_slice(&ALG_SHA256.to_be_bytes());
        b.extend_from_slice(&ECC_NIST_P256.to_be_bytes());
        b.extend_from_slice(&ALG_NULL.to_be_bytes());
        for c in [x, y] {
            b.extend_from_slice(&(c.len() as u16).to_be_bytes());
            b.extend_from_slice(c);
        }
        b
    }

    #[test]
    fn an_ecc_key_parses_with_its_name_and_padded_point() {
        let bytes = ecc_public(attr::SIGN | attr::FIXED_TPM, &[1; 31], &[2; 32]);
        let public = parse_public("key", &bytes).unwrap();
        assert!(public.has(attr::SIGN | attr::FIXED_TPM));
        assert!(!public.has(attr::DECRYPT));
        let PublicKey::EccP256 { point } = &public.key else {
            panic!("not ECC")
        };
        assert_eq!(point[..2], [4, 0]);
        assert_eq!(point[2..33], [1; 31]);
        assert_eq!(point[33..], [2; 32]);
        assert_eq!(public.name[..2], [0, 0x0b]);
        assert_eq!(public.name[2..], Sha256::digest(&bytes)[..]);
    }

    #[test]
    fn truncated_trailing_and_foreign_structures_are_refused() {
        let bytes = ecc_public(attr::SIGN, &[1; 32], &[2; 32]);
        for n in 0..bytes.len() {
            assert!(matches!(
                parse_public("key", &bytes[..n]),
                Err(WireError::Truncated { .. })
            ));
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            parse_public("key", &long),
            Err(WireError::Trailing {
                what: "key",
                extra: 1
            })
        );
        let mut sha1 = bytes;
        sha1[3] = 0x04;
        assert!(parse_public("key", &sha1)
            .unwrap_err()
            .to_string()
            .contains("SHA-256 expected"));
    }

    /// What swtpm made: `tpm2_createek -G rsa`, `tpm2_create -G
    /// ecc256:ecdsa-sha256:null -a ...|restricted|sign`, and `tpm2_quote -l
    /// sha256:16 -q 0102030405` after PCR 16 was extended with SHA-256("x").
    #[test]
    fn what_a_real_tpm_makes_parses() {
        let ek = parse_public("EK", include_bytes!("testdata/ek.pub.tpmt")).unwrap();
        let PublicKey::Rsa { modulus, exponent } = &ek.key else {
            panic!("the EK is RSA")
        };
        assert_eq!((modulus.len(), *exponent), (256, 65_537));
        assert!(ek.has(attr::FIXED_TPM | attr::RESTRICTED | attr::DECRYPT));
        let key = parse_public("key", include_bytes!("testdata/k.pub.tpmt")).unwrap();
        assert!(matches!(key.key, PublicKey::EccP256 { .. }));
        assert!(key.has(
            attr::FIXED_TPM
                | attr::FIXED_PARENT
                | attr::SENSITIVE_DATA_ORIGIN
                | attr::RESTRICTED
                | attr::SIGN
        ));
        let quote = parse_quote(include_bytes!("testdata/quote.attest")).unwrap();
        assert_eq!(quote.extra_data, [1, 2, 3, 4, 5]);
        assert_eq!(quote.pcrs, [16]);
        let pcr16 = Sha256::digest([[0u8; 32].as_slice(), &Sha256::digest(b"x")].concat());
        assert_eq!(quote.pcr_digest, Sha256::digest(pcr16).to_vec());
    }

    #[test]
    fn a_quote_gives_its_nonce_pcrs_and_digest() {
        let mut b = GENERATED.to_be_bytes().to_vec();
        b.extend_from_slice(&ST_ATTEST_QUOTE.to_be_bytes());
        b.extend_from_slice(&[0, 2, 0xaa, 0xbb]); // qualifiedSigner
        b.extend_from_slice(&[0, 3, 7, 8, 9]); // extraData
        b.extend_from_slice(&[0; 17 + 8]);
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&ALG_SHA256.to_be_bytes());
        b.extend_from_slice(&[3, 0x01, 0x00, 0x81]); // PCRs 0, 16, 23
        b.extend_from_slice(&[0, 2, 5, 6]);
        let quote = parse_quote(&b).unwrap();
        assert_eq!(quote.extra_data, [7, 8, 9]);
        assert_eq!(quote.pcrs, [0, 16, 23]);
        assert_eq!(quote.pcr_digest, [5, 6]);
        b[0] = 0;
        assert!(parse_quote(&b).is_err());
    }
}
