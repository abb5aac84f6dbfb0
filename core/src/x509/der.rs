//! Concatenated DER certificates, as the Workload API's `bundle` field and
//! the datastore's chain columns hold them.

use super::X509Error;

/// Splits concatenated DER certificates; empty input is an empty list.
pub fn split_der_certs(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, X509Error> {
    let mut certs = Vec::new();
    while !bytes.is_empty() {
        let (rest, _) = x509_parser::parse_x509_certificate(bytes)
            .map_err(|e| X509Error::Parse(e.to_string()))?;
        let (cert, tail) = bytes.split_at(bytes.len() - rest.len());
        certs.push(cert.to_vec());
        bytes = tail;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::split_der_certs;
    use crate::x509::ca_params;
    use crate::TrustDomain;

    fn ca() -> Vec<u8> {
        let td: TrustDomain = "example.org".parse().unwrap();
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let key = rcgen::KeyPair::generate().unwrap();
        let params = ca_params(&td, now, now + std::time::Duration::from_secs(60)).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn concatenated_certificates_split_back_in_order() {
        let (a, b) = (ca(), ca());
        let joined = [a.clone(), b.clone()].concat();
        assert_eq!(split_der_certs(&joined).unwrap(), vec![a, b]);
        assert!(split_der_certs(&[]).unwrap().is_empty());
    }

    #[test]
    fn trailing_garbage_is_refused() {
        let mut joined = ca();
        joined.extend_from_slice(&[0x30, 0x03, 0x01]);
        assert!(split_der_certs(&joined).is_err());
    }
}
