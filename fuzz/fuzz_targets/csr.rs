//! The server's CSR handling on arbitrary bytes: never panics, and an
//! accepted CSR names a SPIFFE ID with a path.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = signet_core::x509::parse_csr(data) {
        assert!(!csr.spiffe_id.path().is_empty());
    }
});
