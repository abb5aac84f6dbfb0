//! Independent checks of the SPIFFE X509-SVID leaf rules, written against
//! x509-parser directly so they do not trust signet-core's own validator.

use signet_core::{Clock, SystemClock};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Asserts every leaf rule of the X509-SVID standard and returns the URI SAN.
pub fn assert_svid_leaf_profile(der: &[u8]) -> String {
    let (rest, cert) = X509Certificate::from_der(der).expect("leaf parses");
    assert!(rest.is_empty(), "no trailing bytes after the leaf");
    let bc = cert.basic_constraints().expect("basic constraints parse");
    assert!(
        bc.map(|b| !b.value.ca).unwrap_or(true),
        "leaf must have cA=false"
    );
    let mut ku_seen = false;
    let mut uris = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => {
                ku_seen = true;
                assert!(ext.critical, "key usage must be critical");
                assert!(
                    ku.digital_signature(),
                    "key usage must have digitalSignature"
                );
                assert!(!ku.key_cert_sign(), "leaf must not have keyCertSign");
                assert!(!ku.crl_sign(), "leaf must not have cRLSign");
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                assert!(
                    eku.server_auth && eku.client_auth,
                    "EKU must have serverAuth and clientAuth"
                );
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                if cert.subject().iter().next().is_none() {
                    assert!(
                        ext.critical,
                        "SAN must be critical when the subject is empty"
                    );
                }
                for n in &san.general_names {
                    if let GeneralName::URI(u) = n {
                        uris.push(u.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    assert!(ku_seen, "key usage extension must be present");
    assert_eq!(uris.len(), 1, "exactly one URI SAN, found {uris:?}");
    uris.remove(0)
}

/// (notBefore, notAfter) as Unix seconds.
pub fn validity(der: &[u8]) -> (i64, i64) {
    let (_, cert) = X509Certificate::from_der(der).expect("cert parses");
    (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    )
}

/// The serial number as lowercase hex.
pub fn serial_hex(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("cert parses");
    cert.raw_serial_as_string().replace(':', "").to_lowercase()
}

pub fn now_unix() -> i64 {
    signet_core::clock::unix_seconds(SystemClock.now())
}

/// Which certificate of `bundle` issued `chain` (validated now), if any.
pub fn issuer_index(chain: &[Vec<u8>], bundle: &[Vec<u8>]) -> Option<usize> {
    bundle.iter().position(|ca| {
        signet_core::x509::validate_x509_svid(chain, std::slice::from_ref(ca), SystemClock.now())
            .is_ok()
    })
}

/// The authority id Signet uses for a CA: hex SHA-256 of its DER.
pub fn authority_id(ca_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, ca_der);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `openssl verify -CAfile <roots> -untrusted <intermediates> <leaf>` on
/// `chain` (DER, leaf first), files in `dir`: the path a non-SPIFFE TLS
/// stack would build. `Ok` with openssl's output, or `Err` with why not.
pub fn openssl_verify(
    dir: &std::path::Path,
    roots: &[Vec<u8>],
    chain: &[Vec<u8>],
) -> Result<String, String> {
    use signet_core::pem::encode_certs;
    let (leaf, intermediates) = chain.split_first().ok_or("an empty chain")?;
    let write = |name: &str, certs: &[Vec<u8>]| {
        let path = dir.join(name);
        std::fs::write(&path, encode_certs(certs.iter().map(Vec::as_slice))).expect("write PEM");
        path
    };
    let root_file = write("roots.pem", roots);
    let chain_file = write("chain.pem", intermediates);
    let leaf_file = write("leaf.pem", std::slice::from_ref(leaf));
    let out = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root_file)
        .arg("-untrusted")
        .arg(&chain_file)
        .arg(&leaf_file)
        .output()
        .expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}
