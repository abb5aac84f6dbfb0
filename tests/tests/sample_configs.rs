//! The commented sample configs in packaging/config/ stay valid: every key
//! they set is one the binaries accept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

const SERVER: &str = include_str!("../../packaging/config/server.toml");
const AGENT: &str = include_str!("../../packaging/config/agent.toml");

#[test]
fn sample_server_config_parses() {
    signet_server::config::FileConfig::parse(SERVER).expect("packaging/config/server.toml");
}

#[test]
fn sample_agent_config_parses() {
    signet_agent::config::FileConfig::parse(AGENT).expect("packaging/config/agent.toml");
}
