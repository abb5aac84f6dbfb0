//! Defaults, the file, the flags, and what is refused naming the setting.

use super::*;

#[test]
fn embedded_defaults_need_no_file() {
    let c = RuntimeConfig::merge(FileConfig::default(), &RunArgs::default()).unwrap();
    assert_eq!(c.trust_domain.as_str(), "example.org");
    assert_eq!(c.data_dir, PathBuf::from(".data/agent"));
    assert_eq!(c.server_address.to_string(), "127.0.0.1:8081");
    assert_eq!(c.socket_path, default_socket_path());
    assert_eq!(c.workload_api, WorkloadApiLimits::default());
    assert_eq!(c.bootstrap, Bootstrap::DataDir);
    assert_eq!(c.join_token, None);
    assert_eq!(c.jwt_leeway, Duration::from_secs(30));
    assert_eq!(c.max_clock_skew, Duration::from_secs(30));
}

#[test]
fn max_clock_skew_from_file_or_flag() {
    let file = FileConfig::parse("max_clock_skew = \"2m\"").unwrap();
    let c = RuntimeConfig::merge(file.clone(), &RunArgs::default()).unwrap();
    assert_eq!(c.max_clock_skew, Duration::from_secs(120));
    let args = RunArgs {
        max_clock_skew: Some("5s".into()),
        ..Default::default()
    };
    let c = RuntimeConfig::merge(file, &args).unwrap();
    assert_eq!(c.max_clock_skew, Duration::from_secs(5));
}

#[test]
fn jwt_leeway_from_file_or_flag() {
    let file = FileConfig::parse("jwt_leeway = \"1m\"").unwrap();
    let c = RuntimeConfig::merge(file, &RunArgs::default()).unwrap();
    assert_eq!(c.jwt_leeway, Duration::from_secs(60));
    let file = FileConfig::parse("jwt_leeway = 5").unwrap();
    let args = RunArgs {
        jwt_leeway: Some("10s".into()),
        ..Default::default()
    };
    let c = RuntimeConfig::merge(file, &args).unwrap();
    assert_eq!(c.jwt_leeway, Duration::from_secs(10));
    let args = RunArgs {
        jwt_leeway: Some("soon".into()),
        ..Default::default()
    };
    assert!(RuntimeConfig::merge(FileConfig::default(), &args).is_err());
}

#[test]
fn flags_override_the_file() {
    let file = FileConfig::parse(
        r#"
        trust_domain = "file.org"
        server_address = "10.0.0.1:1"
        socket_path = "/file.sock"
        insecure_bootstrap = true
        "#,
    )
    .unwrap();
    let args = RunArgs {
        trust_domain: Some("flag.org".into()),
        ..Default::default()
    };
    let c = RuntimeConfig::merge(file, &args).unwrap();
    assert_eq!(c.trust_domain.as_str(), "flag.org");
    assert_eq!(c.server_address.to_string(), "10.0.0.1:1");
    assert_eq!(c.socket_path, PathBuf::from("/file.sock"));
    assert_eq!(c.bootstrap, Bootstrap::Insecure);
}

#[test]
fn x509pop_section_alone_is_a_valid_file() {
    let file = FileConfig::parse(
        "[node_attestor.x509pop]\ncertificate_path = \"/etc/host.pem\"\nprivate_key_path = \"/etc/host.key\"\n",
    )
    .unwrap();
    let c = RuntimeConfig::merge(file, &RunArgs::default()).unwrap();
    let pop = c.x509pop.unwrap();
    assert_eq!(pop.certificate_path, PathBuf::from("/etc/host.pem"));
    assert_eq!(pop.private_key_path, PathBuf::from("/etc/host.key"));
    assert!(FileConfig::parse("[node_attestor.x509pop]\ncertificate = \"x\"").is_err());
}

#[test]
fn unknown_keys_are_rejected() {
    let err = FileConfig::parse("trust_domian = \"x\"").unwrap_err();
    assert!(err.contains("trust_domian"), "{err}");
}

#[test]
fn bundle_and_insecure_bootstrap_conflict() {
    let file = FileConfig {
        trust_bundle_path: Some("/b.pem".into()),
        ..Default::default()
    };
    let args = RunArgs {
        insecure_bootstrap: true,
        ..Default::default()
    };
    assert!(matches!(
        RuntimeConfig::merge(file, &args),
        Err(ConfigError::ConflictingBootstrap)
    ));
}

#[test]
fn attestors_docker_and_telemetry_from_the_file() {
    let c = RuntimeConfig::merge(FileConfig::default(), &RunArgs::default()).unwrap();
    assert_eq!(
        c.workload_attestors,
        [
            AttestorKind::Unix,
            AttestorKind::Container,
            AttestorKind::Systemd
        ]
    );
    assert_eq!(c.attestor_timeout, Duration::from_secs(2));
    assert_eq!(c.docker, None);
    assert_eq!(c.telemetry_bind, None);
    let file = FileConfig::parse(
        r#"
        workload_attestors = ["unix", "container"]
        attestor_timeout = "5s"
        [workload_attestor.docker]
        socket_path = "/var/run/docker.sock"
        env_allow = ["APP_ENV"]
        timeout = "1s"
        [telemetry]
        bind = "127.0.0.1:9988"
        "#,
    )
    .unwrap();
    let c = RuntimeConfig::merge(file, &RunArgs::default()).unwrap();
    assert_eq!(
        c.workload_attestors,
        [AttestorKind::Unix, AttestorKind::Container]
    );
    assert_eq!(c.attestor_timeout, Duration::from_secs(5));
    let docker = c.docker.unwrap();
    assert_eq!(docker.socket_path, PathBuf::from("/var/run/docker.sock"));
    assert_eq!(docker.env_allow, ["APP_ENV"]);
    assert_eq!(docker.timeout, Duration::from_secs(1));
    assert_eq!(c.telemetry_bind, Some("127.0.0.1:9988".parse().unwrap()));
}

#[test]
fn validate_names_the_unknown_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "trust_domain = \"example.org\"\n\n[telemetry]\nbnid = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let err = validate_file(&path).unwrap_err();
    assert!(
        err.starts_with(&format!("{}:4:1: ", path.display())),
        "{err}"
    );
    assert!(err.contains("unknown field `bnid`"), "{err}");

    std::fs::write(&path, "workload_attestors = [\"unix\", \"k8s\"]\n").unwrap();
    let err = validate_file(&path).unwrap_err();
    assert!(
        err.starts_with(&format!("{}:1:31: ", path.display())),
        "{err}"
    );
    assert!(err.contains("k8s"), "{err}");

    std::fs::write(&path, "\nattestor_timeout = \"soon\"\n").unwrap();
    let err = validate_file(&path).unwrap_err();
    assert!(
        err.starts_with(&format!("{}:2:20: ", path.display())),
        "{err}"
    );

    std::fs::write(&path, "trust_domain = \"Bad Domain\"\n").unwrap();
    assert!(validate_file(&path).is_err());

    std::fs::write(&path, "trust_domain = \"example.org\"\n").unwrap();
    assert_eq!(validate_file(&path), Ok(()));
}

#[test]
fn bad_trust_domain_is_refused() {
    let args = RunArgs {
        trust_domain: Some("Bad Domain".into()),
        ..Default::default()
    };
    assert!(RuntimeConfig::merge(FileConfig::default(), &args).is_err());
}

#[test]
fn durations_above_their_bound_are_refused_naming_the_setting() {
    let err = |file: &str, args: RunArgs| {
        RuntimeConfig::merge(FileConfig::parse(file).unwrap(), &args)
            .unwrap_err()
            .to_string()
    };
    let e = err("jwt_leeway = \"1000000d\"", RunArgs::default());
    assert!(
        e.starts_with("invalid jwt_leeway: 86400000000s is above the limit of 3600s"),
        "{e}"
    );
    let e = err(
        "",
        RunArgs {
            max_clock_skew: Some("3000000d".into()),
            ..Default::default()
        },
    );
    assert!(e.starts_with("invalid --max-clock-skew:"), "{e}");
    let e = err("attestor_timeout = \"2h\"", RunArgs::default());
    assert!(e.starts_with("invalid attestor_timeout:"), "{e}");
    let e = err(
        "[workload_api]\nidle_timeout = \"400d\"",
        RunArgs::default(),
    );
    assert!(e.starts_with("invalid workload_api.idle_timeout:"), "{e}");
    let e = err(
        "[workload_api]\nmax_connections_per_uid = 0",
        RunArgs::default(),
    );
    assert!(e.contains("workload_api.max_connections_per_uid"), "{e}");
}

#[test]
fn workload_api_limits_from_the_file() {
    let file = FileConfig::parse(
        "[workload_api]\nmax_connections_per_uid = 8\nmax_connections = 100\nfirst_request_timeout = \"2s\"\nidle_timeout = \"1m\"\n",
    )
    .unwrap();
    let c = RuntimeConfig::merge(file, &RunArgs::default()).unwrap();
    assert_eq!(c.workload_api.max_connections_per_uid, 8);
    assert_eq!(c.workload_api.max_connections, 100);
    assert_eq!(
        c.workload_api.timeouts.first_request,
        Duration::from_secs(2)
    );
    assert_eq!(c.workload_api.timeouts.idle, Duration::from_secs(60));
}

fn servers(c: &RuntimeConfig) -> Vec<&str> {
    c.server_address.iter().collect()
}

#[test]
fn config_takes_a_comma_separated_server_list() {
    let file =
        FileConfig::parse(r#"server_address = "a.example:8081, b.example:8081,10.0.0.3:8081""#)
            .unwrap();
    let c = RuntimeConfig::merge(file.clone(), &RunArgs::default()).unwrap();
    assert_eq!(
        servers(&c),
        ["a.example:8081", "b.example:8081", "10.0.0.3:8081"]
    );
    let args = RunArgs {
        server_address: Some("c.example:1,d.example:2".into()),
        ..Default::default()
    };
    let c = RuntimeConfig::merge(file, &args).unwrap();
    assert_eq!(servers(&c), ["c.example:1", "d.example:2"], "the flag wins");
}

#[test]
fn config_takes_a_toml_array_of_servers() {
    let file = FileConfig::parse(r#"server_address = ["a.example:8081", "[::1]:8081"]"#).unwrap();
    let c = RuntimeConfig::merge(file, &RunArgs::default()).unwrap();
    assert_eq!(servers(&c), ["a.example:8081", "[::1]:8081"]);
    let err = FileConfig::parse("server_address = 8081").unwrap_err();
    assert!(err.contains("HOST:PORT list"), "{err}");
}

#[test]
fn an_empty_server_list_or_item_is_refused_naming_server_address() {
    let err = |file: &str, flag: Option<&str>| {
        let args = RunArgs {
            server_address: flag.map(Into::into),
            ..Default::default()
        };
        RuntimeConfig::merge(FileConfig::parse(file).unwrap(), &args)
            .unwrap_err()
            .to_string()
    };
    let e = err(r#"server_address = """#, None);
    assert_eq!(e, "invalid server_address: no server address given");
    let e = err(r#"server_address = "a:1,,b:2""#, None);
    assert_eq!(
        e,
        r#"invalid server_address: item 2 of "a:1,,b:2" is empty"#
    );
    let e = err("server_address = []", None);
    assert_eq!(e, "invalid server_address: no server address given");
    let e = err(r#"server_address = ["a:1", ""]"#, None);
    assert!(e.starts_with("invalid server_address: item 2"), "{e}");
    let e = err("", Some("a:1,"));
    assert!(e.starts_with("invalid --server-address: item 2"), "{e}");
    let e = err("", Some("a.example"));
    assert!(
        e.starts_with(r#"invalid --server-address: "a.example" is not HOST:PORT"#),
        "{e}"
    );
}

#[test]
fn edge_settings_from_file_or_flag() {
    let c = RuntimeConfig::merge(FileConfig::default(), &RunArgs::default()).unwrap();
    assert_eq!((c.svid_prefetch, c.reattest_token_file), (None, None));
    let file = FileConfig::parse(
        "svid_prefetch = \"22h\"\nreattest_token_file = \"/etc/signet/reattest-token\"",
    )
    .unwrap();
    let c = RuntimeConfig::merge(file.clone(), &RunArgs::default()).unwrap();
    assert_eq!(c.svid_prefetch, Some(Duration::from_secs(22 * 3600)));
    assert_eq!(
        c.reattest_token_file,
        Some(PathBuf::from("/etc/signet/reattest-token"))
    );
    let args = RunArgs {
        svid_prefetch: Some("0s".into()),
        reattest_token_file: Some("/run/token".into()),
        ..Default::default()
    };
    let c = RuntimeConfig::merge(file, &args).unwrap();
    assert_eq!(c.svid_prefetch, None, "zero: renew at half-life");
    assert_eq!(c.reattest_token_file, Some(PathBuf::from("/run/token")));
    let bad = RunArgs {
        svid_prefetch: Some("soon".into()),
        ..Default::default()
    };
    let err = RuntimeConfig::merge(FileConfig::default(), &bad).unwrap_err();
    assert!(err.to_string().contains("--svid-prefetch"), "{err}");
}
