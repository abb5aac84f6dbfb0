//! The server's and the agent's TOML config files on arbitrary UTF-8:
//! never panics, and whatever converts into a runtime config keeps every
//! duration within its documented bound (the bounds keep certificate times
//! in range) and every connection cap at least 1.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = signet_server::FileConfig::parse(text) {
        use signet_server::config as c;
        match signet_server::RuntimeConfig::try_from(file) {
            Ok(r) => {
                assert!(!r.ca_ttl.is_zero() && r.ca_ttl <= c::MAX_CA_TTL);
                assert!(r.default_x509_svid_ttl <= c::MAX_SVID_TTL);
                assert!(r.default_jwt_svid_ttl <= c::MAX_SVID_TTL);
                assert!(r.join_token_ttl <= c::MAX_JOIN_TOKEN_TTL);
                assert!(r.not_before_backdate <= c::MAX_BACKDATE);
                assert!(r.node_api.max_connections_per_address >= 1);
                assert!(r.node_api.max_connections >= 1);
                assert!(r.node_api.timeouts.idle <= c::MAX_IDLE_TIMEOUT);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    if let Ok(file) = signet_agent::FileConfig::parse(text) {
        use signet_agent::config as c;
        let args = signet_agent::config::RunArgs::default();
        match signet_agent::RuntimeConfig::merge(file, &args) {
            Ok(r) => {
                assert!(r.jwt_leeway <= c::MAX_JWT_LEEWAY);
                assert!(r.max_clock_skew <= c::MAX_CLOCK_SKEW_SETTING);
                assert!(
                    !r.attestor_timeout.is_zero() && r.attestor_timeout <= c::MAX_ATTESTOR_TIMEOUT
                );
                assert!(r.workload_api.max_connections_per_uid >= 1);
                assert!(r.workload_api.timeouts.idle <= c::MAX_IDLE_TIMEOUT);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
