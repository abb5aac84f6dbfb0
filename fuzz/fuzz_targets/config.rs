//! The server's and the agent's TOML config files on arbitrary UTF-8:
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = signet_server::FileConfig::parse(text);
    let _ = signet_agent::FileConfig::parse(text);
});
