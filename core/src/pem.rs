//! PEM encoding of certificates and keys for files on disk and CLI output.

#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("not valid PEM: {0}")]
    Malformed(String),
    #[error("no {0} block found")]
    Missing(&'static str),
}

pub fn encode_certs<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    ders.into_iter()
        .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.to_vec())))
        .collect()
}

pub fn encode_private_key(pkcs8_der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8_der.to_vec()))
}

/// Every CERTIFICATE block, in order; other blocks are skipped.
pub fn decode_certs(text: &[u8]) -> Result<Vec<Vec<u8>>, PemError> {
    let blocks = pem::parse_many(text).map_err(|e| PemError::Malformed(e.to_string()))?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    if certs.is_empty() {
        return Err(PemError::Missing("CERTIFICATE"));
    }
    Ok(certs)
}

/// The first PKCS#8 `PRIVATE KEY` block.
pub fn decode_private_key(text: &[u8]) -> Result<Vec<u8>, PemError> {
    pem::parse_many(text)
        .map_err(|e| PemError::Malformed(e.to_string()))?
        .into_iter()
        .find(|b| b.tag() == "PRIVATE KEY")
        .map(|b| b.into_contents())
        .ok_or(PemError::Missing("PRIVATE KEY"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_round_trip() {
        let text = encode_certs([&b"one"[..], &b"two"[..]]);
        assert_eq!(
            decode_certs(text.as_bytes()).unwrap(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
    }

    #[test]
    fn missing_blocks_are_errors_not_panics() {
        assert!(decode_certs(b"").is_err());
        assert!(decode_private_key(b"garbage").is_err());
        let key = encode_private_key(b"k");
        assert_eq!(decode_private_key(key.as_bytes()).unwrap(), b"k".to_vec());
    }
}
