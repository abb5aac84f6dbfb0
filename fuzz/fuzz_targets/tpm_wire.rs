//! The TPM structures an agent sends the server (TPMT_PUBLIC, TPMS_ATTEST):
//! never panics, and whatever parses names the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_server::attest::tpm::wire::{parse_public, parse_quote, PublicKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(public) = parse_public("fuzz", data) {
        assert_eq!(public.name.len(), 34);
        if let PublicKey::EccP256 { point } = &public.key {
            assert_eq!(point.len(), 65);
        }
    }
    let _ = parse_quote(data);
});
