//! The commented sample configs in packaging/config/ tell the truth: the
//! file as shipped converts into a runtime config whose values are the
//! embedded defaults (but the paths the package chooses), and every option
//! shown commented out is a key the binaries take, with a valid value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

const SERVER: &str = include_str!("../../packaging/config/server.toml");
const AGENT: &str = include_str!("../../packaging/config/agent.toml");

/// The file with every commented-out option line (`# key = value`,
/// `# [section]`) uncommented; prose comments stay.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| {
            let body = line.strip_prefix("# ").unwrap_or(line);
            let is_option = body.starts_with('[')
                || body.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                });
            if line.starts_with("# ") && is_option {
                body.to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` without the section headed `header` (up to the next blank line),
/// and that section alone.
fn split_section(text: &str, header: &str) -> (String, String) {
    let (mut rest, mut section) = (Vec::new(), Vec::new());
    let mut inside = false;
    for line in text.lines() {
        inside = (inside && !line.trim().is_empty()) || line == header;
        if inside {
            section.push(line);
        } else {
            rest.push(line);
        }
    }
    (rest.join("\n"), section.join("\n"))
}

#[test]
fn the_sample_server_config_shows_the_defaults() {
    use signet_server::ca::upstream::UpstreamSettings;
    use signet_server::config::{FileConfig, RuntimeConfig};
    let shipped = RuntimeConfig::try_from(FileConfig::parse(SERVER).unwrap()).unwrap();
    let defaults = RuntimeConfig::defaults().unwrap();
    assert_eq!(shipped.data_dir, PathBuf::from("/var/lib/signet/server"));
    assert_eq!(
        shipped.admin_socket,
        PathBuf::from("/run/signet-server/admin.sock")
    );
    assert_eq!(shipped.trust_domain, defaults.trust_domain);
    assert_eq!(shipped.bind, defaults.bind);
    assert_eq!(shipped.ca_ttl, defaults.ca_ttl);
    assert_eq!(
        shipped.default_x509_svid_ttl,
        defaults.default_x509_svid_ttl
    );
    assert_eq!(shipped.default_jwt_svid_ttl, defaults.default_jwt_svid_ttl);
    assert_eq!(shipped.join_token_ttl, defaults.join_token_ttl);
    assert_eq!(shipped.not_before_backdate, defaults.not_before_backdate);
    assert_eq!(shipped.log_json, defaults.log_json);
    assert_eq!(shipped.node_api, defaults.node_api);
    assert_eq!(shipped.telemetry_bind, None);
    assert_eq!(shipped.x509pop_ca_bundle, None);
    assert!(
        (shipped.authority_schedule.prepare_at - defaults.authority_schedule.prepare_at).abs()
            < 1e-3
    );
    assert!(
        (shipped.authority_schedule.activate_at - defaults.authority_schedule.activate_at).abs()
            < 1e-3
    );

    // Every commented option is real and valid; the [node_api] block shown
    // is the defaults too.
    // One upstream authority at a time: the signet one is checked alone.
    let (all, signet) = split_section(&uncommented(SERVER), "[upstream_authority.signet]");
    let all = FileConfig::parse(&all).expect("uncommented server.toml");
    let all = RuntimeConfig::try_from(all).unwrap();
    let signet = FileConfig::parse(&signet).expect("the signet upstream block");
    match RuntimeConfig::try_from(signet).unwrap().upstream {
        Some(UpstreamSettings::Signet(s)) => {
            assert_eq!(s.server_address, "upstream.example.org:8081");
            assert_eq!(s.timeout, std::time::Duration::from_secs(10));
        }
        other => panic!("the signet upstream shown: {other:?}"),
    }
    assert_eq!(all.node_api, defaults.node_api);
    assert_eq!(all.telemetry_bind.unwrap().to_string(), "127.0.0.1:9988");
    assert_eq!(
        all.x509pop_ca_bundle,
        Some(PathBuf::from("/etc/signet/org-ca.pem"))
    );
    // SQLite in the data dir unless a url is set; the PostgreSQL settings
    // shown are the defaults.
    assert_eq!(
        shipped.datastore_url().to_string(),
        "sqlite:///var/lib/signet/server/datastore.sqlite3"
    );
    assert_eq!(
        all.datastore_url().to_string(),
        "postgres://signet@db.internal:5432/signet"
    );
    assert_eq!(
        all.postgres.max_connections,
        defaults.postgres.max_connections
    );
    assert_eq!(
        all.postgres.statement_timeout,
        defaults.postgres.statement_timeout
    );
    assert_eq!(
        all.postgres.connect_timeout,
        defaults.postgres.connect_timeout
    );
    assert!(all.postgres.password_file.is_some());
    match all.upstream {
        Some(UpstreamSettings::Disk(d)) => {
            assert_eq!(d.cert_path, PathBuf::from("/etc/signet/upstream-root.pem"))
        }
        other => panic!("the disk upstream shown: {other:?}"),
    }
    // Federation is off unless configured; the bounds shown are the defaults.
    assert_eq!(shipped.federation, defaults.federation);
    assert_eq!(all.federation.bounds, defaults.federation.bounds);
    let endpoint = all.federation.endpoint.expect("the bundle endpoint shown");
    assert_eq!(endpoint.bind.to_string(), "0.0.0.0:8443");
    assert_eq!(endpoint.refresh_hint, std::time::Duration::from_secs(300));
    assert_eq!(all.federation.relationships.len(), 1);
    assert_eq!(all.federation.relationships[0].trust_domain, "b.test");
}

#[test]
fn the_sample_agent_config_shows_the_defaults() {
    use signet_agent::config::{FileConfig, RunArgs, RuntimeConfig};
    let args = RunArgs::default();
    let shipped = RuntimeConfig::merge(FileConfig::parse(AGENT).unwrap(), &args).unwrap();
    let defaults = RuntimeConfig::merge(FileConfig::default(), &args).unwrap();
    assert_eq!(shipped.data_dir, PathBuf::from("/var/lib/signet/agent"));
    assert_eq!(
        shipped.socket_path,
        PathBuf::from("/run/signet-agent/public/api.sock")
    );
    assert_eq!(shipped.trust_domain, defaults.trust_domain);
    assert_eq!(shipped.server_address, defaults.server_address);
    assert_eq!(shipped.jwt_leeway, defaults.jwt_leeway);
    assert_eq!(shipped.max_clock_skew, defaults.max_clock_skew);
    assert_eq!(shipped.workload_attestors, defaults.workload_attestors);
    assert_eq!(shipped.attestor_timeout, defaults.attestor_timeout);
    assert_eq!(shipped.workload_api, defaults.workload_api);
    assert_eq!(shipped.join_token, None);

    let all = FileConfig::parse(&uncommented(AGENT)).expect("uncommented agent.toml");
    let all = RuntimeConfig::merge(all, &args).unwrap();
    assert_eq!(all.workload_api, defaults.workload_api);
    let docker = all.docker.expect("the docker section");
    assert_eq!(docker.timeout, signet_agent::config::DEFAULT_DOCKER_TIMEOUT);
    assert!(all.x509pop.is_some());
    assert_eq!(all.telemetry_bind.unwrap().to_string(), "127.0.0.1:9989");
}
