use super::*;

#[test]
fn no_config_at_all_gives_the_contract_defaults() {
    let c = RuntimeConfig::try_from(FileConfig::default()).unwrap();
    assert_eq!(c.trust_domain.as_str(), "example.org");
    assert_eq!(c.data_dir, PathBuf::from(".data/server"));
    assert_eq!(c.bind.to_string(), "127.0.0.1:8081");
    assert_eq!(c.admin_socket, default_admin_socket());
    assert_eq!(c.node_api, NodeApiLimits::default());
    assert_eq!(c.ca_ttl, Duration::from_secs(86400));
    assert_eq!(c.default_x509_svid_ttl, Duration::from_secs(3600));
    assert_eq!(c.default_jwt_svid_ttl, Duration::from_secs(300));
    assert_eq!(c.join_token_ttl, Duration::from_secs(600));
}

#[test]
fn file_accepts_duration_strings_and_seconds_and_flags_win() {
    let file = FileConfig::parse(
        "trust_domain = \"corp.test\"\nca_ttl = \"2h\"\ndefault_x509_svid_ttl = 90\ndefault_jwt_svid_ttl = \"2m\"\nbind = \"127.0.0.1:9000\"\n",
    )
    .unwrap();
    let flags = FileConfig {
        bind: Some("127.0.0.1:9001".into()),
        ..Default::default()
    };
    let c = RuntimeConfig::try_from(file.merge(flags)).unwrap();
    assert_eq!(c.trust_domain.as_str(), "corp.test");
    assert_eq!(c.ca_ttl, Duration::from_secs(7200));
    assert_eq!(c.default_x509_svid_ttl, Duration::from_secs(90));
    assert_eq!(c.default_jwt_svid_ttl, Duration::from_secs(120));
    assert_eq!(c.bind.port(), 9001);
}

#[test]
fn unknown_keys_and_bad_values_are_refused() {
    assert!(FileConfig::parse("trust_domian = \"x\"").is_err());
    assert!(FileConfig::parse("ca_ttl = \"10x\"").is_err());
    let bad_td = FileConfig {
        trust_domain: Some("Bad.Domain".into()),
        ..Default::default()
    };
    assert!(RuntimeConfig::try_from(bad_td).is_err());
}

#[test]
fn validate_names_an_unknown_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(
        &path,
        "trust_domain = \"corp.test\"\n\n[node_attestor.x509pop]\nca_bundle = \"/x.pem\"\n",
    )
    .unwrap();
    let err = validate_file(&path).unwrap_err();
    let want = format!("{}:4:1: unknown field `ca_bundle`", path.display());
    assert!(err.starts_with(&want), "{err}");
    std::fs::write(&path, "ca_ttl = \"1h\"\nbind = \"nowhere\"\n").unwrap();
    let err = validate_file(&path).unwrap_err();
    assert!(
        err.starts_with(&format!("{}:2:1: invalid bind address", path.display())),
        "{err}"
    );
    std::fs::write(&path, "[telemetry]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let c = validate_file(&path).unwrap();
    assert_eq!(c.telemetry_bind.unwrap().ip().to_string(), "127.0.0.1");
}

#[test]
fn not_before_backdate_is_configurable_and_defaults_to_30s() {
    let default = RuntimeConfig::try_from(FileConfig::default()).unwrap();
    assert_eq!(default.not_before_backdate, Duration::from_secs(30));
    let file = FileConfig::parse("not_before_backdate = \"5s\"").unwrap();
    let c = RuntimeConfig::try_from(file).unwrap();
    assert_eq!(c.not_before_backdate, Duration::from_secs(5));
}

#[test]
fn durations_above_their_bound_are_refused_naming_the_setting() {
    let err = |text: &str| {
        RuntimeConfig::try_from(FileConfig::parse(text).unwrap())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("not_before_backdate = \"1000000d\""),
        "not_before_backdate (--not-before-backdate) of 86400000000s is above the limit of 86400s"
    );
    assert_eq!(
        err("ca_ttl = \"3000000d\""),
        "ca_ttl (--ca-ttl) of 259200000000s is above the limit of 316224000s"
    );
    assert!(err("ca_ttl = \"1000000d\"").starts_with("ca_ttl (--ca-ttl) of "));
    assert!(err("default_x509_svid_ttl = \"400d\"")
        .starts_with("default_x509_svid_ttl (--default-x509-svid-ttl) of "));
    assert!(err("join_token_ttl = \"400d\"").starts_with("join_token_ttl (--join-token-ttl) of "));
    assert!(err("[node_api]\nidle_timeout = \"2d\"").starts_with("node_api.idle_timeout of "));
    assert_eq!(
        err("[node_api]\nmax_connections_per_address = 0"),
        "node_api.max_connections_per_address must be at least 1"
    );
    // The largest allowed values start a CA whose times are in range.
    let c = RuntimeConfig::try_from(
        FileConfig::parse("ca_ttl = \"3660d\"\nnot_before_backdate = \"1d\"").unwrap(),
    )
    .unwrap();
    assert_eq!(c.ca_ttl, MAX_CA_TTL);
    assert_eq!(c.not_before_backdate, MAX_BACKDATE);
}

#[test]
fn node_api_limits_from_the_file() {
    let c = RuntimeConfig::try_from(
        FileConfig::parse(
            "[node_api]\nmax_connections_per_address = 4\nmax_connections = 9\ntls_handshake_timeout = \"2s\"\nfirst_request_timeout = \"3s\"\nidle_timeout = \"1m\"\n",
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(c.node_api.max_connections_per_address, 4);
    assert_eq!(c.node_api.max_connections, 9);
    assert_eq!(c.node_api.tls_handshake_timeout, Duration::from_secs(2));
    assert_eq!(c.node_api.timeouts.first_request, Duration::from_secs(3));
    assert_eq!(c.node_api.timeouts.idle, Duration::from_secs(60));
}
